-- vidretry schema, version 12: a notification whose send crashes the notifier is set aside.
--
-- A notifier marks a row "send_started_at" (in a group commit, like its sends) just before
-- it hands the message to Telegram's library, and every outcome clears the mark. A row
-- rescued with the mark still set was being sent when its notifier died (a segfault in a
-- library, an OOM kill, or a plain kill): that is one crash. A row merely waiting for its
-- slot, or out as the probe of an outage between tries, has no mark and is not charged.
-- Three crashes with no outcome between them (an outcome resets the count) and the row is
-- dead, "crashed the notifier 3 times", and each admin gets a 'set_aside' notice. Notices
-- belong to no asset, like a pause's: their generation is the id of the row set aside, so
-- the unique index on notices makes one per admin and row.
ALTER TABLE notifications ADD COLUMN send_started_at timestamptz;
ALTER TABLE notifications ADD COLUMN crashes smallint NOT NULL DEFAULT 0;

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('failed', 'ready', 'alert', 'paused', 'resumed', 'set_aside'));
ALTER TABLE notifications DROP CONSTRAINT queue_notices_have_no_asset;
ALTER TABLE notifications ADD CONSTRAINT notices_have_no_asset
    CHECK ((asset_id IS NULL) = (kind IN ('paused', 'resumed', 'set_aside')));
