-- vidretry schema, version 6: the bot as the front door.
--
-- Admins are told through the outbox when a user used up their retries for the day: a third
-- kind of notification, one per admin and failure (the unique key of notifications).
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('failed', 'ready', 'alert'));

-- /my lists a user's newest requests, and the open-requests limit counts them.
CREATE INDEX user_requests_by_user ON user_requests (user_id, id);
-- The retries-per-day limit counts a user's retries in the history. Retries are rare: a
-- partial index stays small and costs the other history rows nothing.
CREATE INDEX job_events_retries_by_actor ON job_events (actor, created_at) WHERE kind = 'retried';
-- /failed shows the latest failures: few rows, however many assets are finished.
CREATE INDEX video_assets_failed ON video_assets (finished_at) WHERE state = 'failed';
