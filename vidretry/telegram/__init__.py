"""Telegram: delivering the outbox and answering users, through the bot's one session.

Owns the notifier and its pacing (``notifier``, ``delivery``), the outbox rows it delivers
(``outbox``), leadership among notifiers (``leadership``), the retry button (``buttons``),
the bot's conversation (``conversation``), per-user limits (``limits``), the console
transport that prints instead of sending (``console``), and the Telethon adapter
(``adapter``) — the only module of vidretry that imports Telethon.

May import: ``vidretry.queue``, ``vidretry.db`` and the shared vocabulary; never ``app``
or ``cli`` (``.importlinter`` checks it).
"""
