"""Telegram: delivering the outbox and answering users, through the bot's one session.

How a video is sent: the notifier claims a due row (``notifier``, over the ``outbox`` rows),
``notifications`` says what its kind sends, ``videos`` makes it one upload per video (then
Telegram's reference), and the bot (``bot``, the Telethon adapter: ``bot.upload``) streams
it from the video store (vidretry.results).

Owns the notifier (``notifier``), what each notification sends (``notifications``), the
outbox rows it delivers (``outbox``), what it needs from a transport (``transport``),
Telegram's limits (``pacing``), its outage tracking (``outage``), leadership among notifiers
(``leadership``), one upload per video (``videos``), the buttons' data (``callback_data``),
the retry and cancel buttons (``buttons``), the bot's conversation (``conversation``),
per-user limits (``limits``), the acceptance message kept current (``progress``), the
operator's plugins (``plugins``), the session file kept private (``session``), the console
transport that prints instead of sending (``console``), and the Telethon adapter (``bot``)
— the only package of vidretry that imports Telethon.

May import: ``vidretry.queue``, ``vidretry.results``, ``vidretry.db`` and the shared
vocabulary; never ``app`` or ``cli`` (``.importlinter`` checks it).
"""
