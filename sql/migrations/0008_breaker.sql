-- vidretry schema, version 8: a broken generator pauses the queue; retried jobs go first.
--
-- A pause is a row of queue_pauses; the open one (resumed_at IS NULL, at most one) stops
-- every claim. The circuit breaker opens one when attempts on several different assets fail
-- in a row; an operator opens one with `vidretry pause`. Closed pauses stay as the record.
CREATE TABLE queue_pauses (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'breaker': opened by the circuit breaker, ended by the first probe that succeeds.
    -- 'manual': opened by an operator, ended only by `vidretry resume`.
    reason           text        NOT NULL CHECK (reason IN ('breaker', 'manual')),
    -- The operator's --reason, or the error of the attempt that opened it.
    detail           text,
    paused_by        text        NOT NULL,
    paused_at        timestamptz NOT NULL,
    -- Whether the admins were told of this pause (then they are told when it ends, too).
    announced        boolean     NOT NULL DEFAULT false,
    -- Attempts given back when the breaker opened it, and while it was open.
    refunded         integer     NOT NULL DEFAULT 0,
    -- Probing: one job at a time, every probe_interval_seconds (doubling up to a cap).
    probe_interval_seconds float8,
    next_probe_at    timestamptz,
    probe_asset      bigint REFERENCES video_assets (id),
    probes           integer     NOT NULL DEFAULT 0,
    last_probe_at    timestamptz,
    last_probe_error text,
    resumed_at       timestamptz,
    resumed_by       text,
    CONSTRAINT resumed_complete CHECK ((resumed_at IS NULL) = (resumed_by IS NULL))
);

-- At most one open pause: opening one is an INSERT that conflicts with this index, so of two
-- workers tripping the breaker at once exactly one opens it.
CREATE UNIQUE INDEX queue_pauses_one_open ON queue_pauses ((true)) WHERE resumed_at IS NULL;

-- The breaker's memory: the assets whose attempts failed since the last success, with when.
-- One row, locked by every failed attempt (never by a success unless there is a streak to
-- forget), so failures are counted in one order by every worker.
CREATE TABLE breaker (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    streak_assets bigint[]      NOT NULL DEFAULT '{}',
    streak_times  timestamptz[] NOT NULL DEFAULT '{}',
    CONSTRAINT streak_pairs CHECK (cardinality(streak_assets) = cardinality(streak_times))
);

INSERT INTO breaker DEFAULT VALUES;

-- A refunded attempt is history too.
ALTER TABLE job_events DROP CONSTRAINT job_events_kind_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_kind_check CHECK (kind IN (
    'enqueued', 'requested', 'claimed', 'attempt_failed', 'succeeded', 'failed', 'rescued',
    'released', 'retried', 'refunded'));

-- The admins hear of a pause and of its end: outbox rows that belong to no asset. Their
-- generation is the pause's id, and a partial unique index makes each one once per admin.
ALTER TABLE notifications ALTER COLUMN asset_id DROP NOT NULL;
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('failed', 'ready', 'alert', 'paused', 'resumed'));
ALTER TABLE notifications ADD CONSTRAINT queue_notices_have_no_asset
    CHECK ((asset_id IS NULL) = (kind IN ('paused', 'resumed')));
CREATE UNIQUE INDEX notifications_queue_notices ON notifications (user_id, kind, generation)
    WHERE asset_id IS NULL;

-- Retries first: a job put back by the retry service (generation > 0) is claimed before the
-- pending jobs nobody retried, then by due time. `generation = 0` sorts false (retried) first.
DROP INDEX video_assets_claimable;
CREATE INDEX video_assets_claimable ON video_assets ((generation = 0), run_at, id)
    WHERE state = 'pending';
