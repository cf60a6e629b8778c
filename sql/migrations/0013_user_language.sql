-- vidretry schema, version 13: each Telegram user's language.
--
-- Telegram tells a bot the language of a user's app (User.lang_code: "en", "pt-br") on every
-- update from them, and Telethon's session does not keep it: the bot records it when they
-- write or press a button, and every message to them is rendered in it when it is sent
-- (config [messages.<code>], English built in; NULL or unknown: the default [messages]).
ALTER TABLE telegram_users ADD COLUMN lang_code text;
