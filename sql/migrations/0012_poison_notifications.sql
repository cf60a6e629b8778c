-- vidretry schema, version 12: a notification that crashes the notifier is set aside, and a
-- job that crashes its worker takes no other job down with it.
--
-- A row whose lease ran out while a notifier held it (the notifier died, or lost its term)
-- counts a crash. A row that crashed once is sent alone, with nothing else in flight, so a
-- crash while it is out is its own; at 3 crashes it is dead, and each admin gets a
-- 'set_aside' notice. Such notices belong to no asset, like a pause's: their generation is
-- the id of the row set aside, so the unique index on notices makes one per admin.
ALTER TABLE notifications ADD COLUMN crashes smallint NOT NULL DEFAULT 0;

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('failed', 'ready', 'alert', 'paused', 'resumed', 'set_aside'));
ALTER TABLE notifications DROP CONSTRAINT queue_notices_have_no_asset;
ALTER TABLE notifications ADD CONSTRAINT notices_have_no_asset
    CHECK ((asset_id IS NULL) = (kind IN ('paused', 'resumed', 'set_aside')));

-- The suspects due: few rows, looked for every maintenance round.
CREATE INDEX notifications_suspects ON notifications (next_attempt_at, id)
    WHERE state = 'pending' AND crashes > 0;

-- Jobs the same way: a job whose lease expired (its worker died) counts a crash, and runs
-- alone in its worker next time, so the jobs that were running beside it at the crash are
-- not charged again and again for a job that kills every worker it runs in. The crash is
-- an attempt too, as before: such a job fails after max_attempts. A retry forgets them.
ALTER TABLE video_assets ADD COLUMN crashes smallint NOT NULL DEFAULT 0;
CREATE INDEX video_assets_suspects ON video_assets (run_at, id)
    WHERE state = 'pending' AND crashes > 0;
