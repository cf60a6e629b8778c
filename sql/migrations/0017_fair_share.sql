-- vidretry schema, version 17: a fair share of the generator — per-user turns, priorities,
-- global quotas, and "slow down" answers that cost no attempt.
--
-- Fairness is decided when a job is enqueued, not when it is claimed (start-time fair
-- queueing, as Hatchet's multi-tenant queue does it): a job gets a "turn", the round of the
-- queue it belongs to — the current round at its priority plus the number of jobs its owner
-- already has waiting there. The claim then reads the pending rows in (priority, retries
-- first, turn, due time, id) order from one index, so it stays a plain index scan with SKIP
-- LOCKED: no per-claim look at every user, no table lock, no counter row written per job.
-- A user with 30 jobs waiting holds turns r..r+29; one who arrives later with one job gets
-- turn r and goes before the first's second job.

-- The owner is the asset's first requester (NULL: enqueued with nobody to tell, from the
-- command line or SQL; such a job is its own owner and is never behind another of its own).
ALTER TABLE video_assets
    ADD COLUMN owner bigint,
    ADD COLUMN priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    ADD COLUMN turn bigint NOT NULL DEFAULT 0 CHECK (turn >= 0);

UPDATE video_assets AS a
SET owner = first.user_id
FROM (SELECT DISTINCT ON (asset_id) asset_id, user_id FROM user_requests ORDER BY asset_id, id)
     AS first
WHERE a.id = first.asset_id;

-- The claim order: higher priority first; within a priority, jobs put back by a retry first
-- (as since schema 8), then by turn, then by due time and id. Jobs waiting in a backoff stay
-- in the index with their turn: when due, they are ahead of the newer arrivals.
DROP INDEX video_assets_claimable;
CREATE INDEX video_assets_claimable
    ON video_assets (priority DESC, (generation = 0), turn, run_at, id)
    WHERE state = 'pending';

-- How many jobs an owner has waiting at a priority: counted when the owner enqueues.
CREATE INDEX video_assets_waiting_by_owner ON video_assets (owner, priority)
    WHERE state = 'pending';

-- The queue's order, as the workers' [queue] fair says: every worker writes it when it
-- starts, and every enqueue (the command line, the bot, SQL from another program) reads it.
-- false: every job gets turn 0, which is first come, first served within a priority.
CREATE TABLE queue_policy (
    id     boolean     PRIMARY KEY DEFAULT true CHECK (id),
    fair   boolean     NOT NULL DEFAULT true,
    set_by text,
    set_at timestamptz
);

INSERT INTO queue_policy DEFAULT VALUES;

-- A generator that answered "slow down" (a 429, a full GPU pool) holds off every worker's
-- new starts until "until": one row, read by every claim like an open pause, extended (never
-- shortened) by each such answer.
CREATE TABLE generator_hold (
    id      boolean     PRIMARY KEY DEFAULT true CHECK (id),
    until   timestamptz NOT NULL,
    detail  text        NOT NULL,
    held_by text        NOT NULL,
    held_at timestamptz NOT NULL
);

-- [worker] max_starts_per_minute = N: N tokens; a start takes a free one and keeps it for 60
-- seconds, so no 60-second window holds more than N starts. Rows are added by the workers
-- as their N needs them; claims under a quota are serialised (sql/queries/jobs.sql), so a
-- token is never taken twice.
CREATE TABLE start_tokens (
    id      integer     PRIMARY KEY CHECK (id >= 1),
    free_at timestamptz NOT NULL
);

-- "Slow down" is history too: the attempt given back, and for how long every worker waits.
ALTER TABLE job_events DROP CONSTRAINT job_events_kind_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_kind_check CHECK (kind IN (
    'enqueued', 'requested', 'claimed', 'attempt_failed', 'succeeded', 'failed', 'rescued',
    'released', 'retried', 'refunded', 'withdrawn', 'cancelled', 'reopened', 'resent',
    'rate_limited'));
