-- vidretry schema, version 10: a pending job always has an attempt left.
--
-- Every path that leaves a job pending (a failure with attempts remaining, a rescue, a
-- release, a refund, a retry) keeps attempts below max_attempts; a job out of attempts is
-- failed in the same statement. The database now says so too, so that a bug in one of
-- those paths fails loudly instead of queueing a job that can never run.
ALTER TABLE video_assets
    ADD CONSTRAINT pending_has_attempts_left CHECK (state <> 'pending' OR attempts < max_attempts);
