-- vidretry schema, version 15: the wait, seen from Telegram — cancel, and progress.
--
-- Cancel. A user withdraws their own request ('cancelled'); when nobody waits for an asset
-- any more, or an operator cancels it, the job is 'cancelled' too: a terminal state, never
-- claimed, that asking again re-opens as a new generation. An asset cancelled by an
-- operator tells each user who waited: a 'cancelled' notification.
ALTER TABLE video_assets DROP CONSTRAINT video_assets_state_check;
ALTER TABLE video_assets ADD CONSTRAINT video_assets_state_check
    CHECK (state IN ('pending', 'running', 'available', 'failed', 'cancelled'));
ALTER TABLE video_assets DROP CONSTRAINT finished_iff_terminal;
ALTER TABLE video_assets ADD CONSTRAINT finished_iff_terminal
    CHECK ((state IN ('available', 'failed', 'cancelled')) = (finished_at IS NOT NULL));
-- status counts cancelled assets from this, as it counts failed ones from video_assets_failed.
CREATE INDEX video_assets_cancelled ON video_assets (finished_at) WHERE state = 'cancelled';

ALTER TABLE user_requests DROP CONSTRAINT user_requests_state_check;
ALTER TABLE user_requests ADD CONSTRAINT user_requests_state_check
    CHECK (state IN ('pending', 'done', 'failed', 'cancelled'));

ALTER TABLE job_events DROP CONSTRAINT job_events_kind_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_kind_check CHECK (kind IN (
    'enqueued', 'requested', 'claimed', 'attempt_failed', 'succeeded', 'failed', 'rescued',
    'released', 'retried', 'refunded',
    'withdrawn',   -- one user's request cancelled by that user
    'cancelled',   -- the job cancelled: nobody waits any more, or an operator said so
    'reopened'));  -- a cancelled asset asked for again: a new generation

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('failed', 'ready', 'alert', 'paused', 'resumed', 'set_aside', 'cancelled'));

-- Progress. The generator's last report for the running attempt, 0 to 1 (NULL: none yet);
-- a claim clears it.
ALTER TABLE video_assets ADD COLUMN progress real CHECK (progress BETWEEN 0 AND 1);

-- The message that accepted a request in Telegram: the notifier edits it into the request's
-- place in line, then its progress. shown is the text it holds now; checked_at when it was
-- last brought up to date (or found current), edited_at when it was last edited — at most
-- once per [notifier] progress_edit_seconds in a chat.
ALTER TABLE user_requests
    ADD COLUMN accept_message_id bigint,
    ADD COLUMN shown text,
    ADD COLUMN checked_at timestamptz,
    ADD COLUMN edited_at timestamptz;
-- The progress pass reads only the requests that wait and have a message to edit.
CREATE INDEX user_requests_shown ON user_requests (checked_at NULLS FIRST)
    WHERE state = 'pending' AND accept_message_id IS NOT NULL;
