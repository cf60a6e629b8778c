-- vidretry schema, version 2: Telegram users the bot has met.
--
-- The access hash lets the bot address a user as InputPeerUser(id, access_hash) after a
-- restart, without Telethon's session cache. A user who blocked the bot (or deleted their
-- account, or never started it) is marked, and later notifications to them are not
-- attempted until they write to the bot again, which clears the mark.
CREATE TABLE telegram_users (
    user_id        bigint PRIMARY KEY,
    access_hash    bigint,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz,
    blocked_at     timestamptz,
    blocked_reason text,
    CONSTRAINT blocked_has_reason CHECK ((blocked_at IS NULL) = (blocked_reason IS NULL))
);
