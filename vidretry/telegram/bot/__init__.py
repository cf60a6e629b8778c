"""The bot, logged in through Telethon: the only package of vidretry that imports it.

``telegram_bot`` is the one object the rest uses (``TelegramBot``), made of: Telethon's
client, tuned (``client``); logging in and staying connected (``connection``); Telethon's
errors told as vidretry's outcomes (``outcomes``); sending a text (``messages``) and a video
(``upload``: streamed from the video store, or by Telegram's reference); and receiving the
buttons' presses and private messages (``updates``).
"""
