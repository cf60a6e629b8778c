-- Named statements for pausing the queue (vidretry/queue/breaker.py and the failure path
-- of vidretry/queue/jobs.py): the circuit breaker, its probes and refunds, and pause/resume
-- by hand. A "now" parameter that is NULL means the time of the statement
-- (statement_timestamp()), not of its transaction's start: a failed attempt's transaction
-- waits for the breaker's lock, and begins before others' pauses, resumes and failures that
-- it then sees. What it records is timed after them, so the history tells the order things
-- were decided in (a failure for good is recorded before the pause that did not hold it
-- back, or after the resume that let it count), as the chaos run checks.
--
-- The open pause is the row of queue_pauses with resumed_at IS NULL (at most one, by a
-- unique index); claim_jobs claims nothing while it exists.

-- name: lock_breaker
-- First statement of every failed attempt's transaction: failures are counted one at a time,
-- and the statements after it see every pause opened or closed before it got the lock.
SELECT true AS locked FROM breaker FOR UPDATE;

-- name: note_failed_attempt
-- Add a failed attempt to the streak of failures since the last success, forgetting those
-- older than the window. While the queue is paused nothing is counted (the attempt will be
-- refunded) and the streak starts afresh. Returns what the breaker needs to decide: whether
-- the queue is paused, the streak, and how many different assets it covers.
WITH paused AS (
    SELECT EXISTS (SELECT 1 FROM queue_pauses WHERE resumed_at IS NULL) AS paused
),
kept AS (
    SELECT s.asset, s.at, s.i
    FROM breaker AS b,
         unnest(b.streak_assets, b.streak_times) WITH ORDINALITY AS s(asset, at, i)
    WHERE s.at > coalesce(%(now)s::timestamptz, statement_timestamp()) - make_interval(secs => %(window_seconds)s)
)
UPDATE breaker AS b
SET streak_assets = CASE WHEN paused.paused OR NOT %(counting)s THEN '{}'
                         ELSE ARRAY(SELECT asset FROM kept ORDER BY i) || %(asset_id)s::bigint
                    END,
    streak_times = CASE WHEN paused.paused OR NOT %(counting)s THEN '{}'
                        ELSE ARRAY(SELECT at FROM kept ORDER BY i)
                             || coalesce(%(now)s::timestamptz, statement_timestamp())
                   END
FROM paused
WHERE b.id
RETURNING paused.paused, b.streak_assets,
          (SELECT count(DISTINCT asset) FROM unnest(b.streak_assets) AS asset) AS assets;

-- name: open_breaker_pause
-- The breaker trips: open a pause, with the first probe due after one probe interval. The
-- unique index on open pauses makes this a no-op if a pause is already open.
INSERT INTO queue_pauses (reason, detail, paused_by, paused_at, announced,
                          probe_interval_seconds, next_probe_at)
VALUES ('breaker', %(error)s, %(owner)s, coalesce(%(now)s::timestamptz, statement_timestamp()),
        cardinality(%(admins)s::bigint[]) > 0, %(probe_seconds)s,
        coalesce(%(now)s::timestamptz, statement_timestamp()) + make_interval(secs => %(probe_seconds)s))
ON CONFLICT ((true)) WHERE resumed_at IS NULL DO NOTHING
RETURNING id;

-- name: forget_streak
-- After the breaker tripped: its streak is spent.
UPDATE breaker SET streak_assets = '{}', streak_times = '{}' WHERE id RETURNING id;

-- name: refund_attempt
-- A failed attempt that the open pause makes not count: the job is pending again with the
-- attempt given back, due at once (nothing claims it before the queue resumes). Fenced by
-- the lease token like every change to a running job. If it was the pause's probe, the
-- probe failed: the next one is due after twice the interval, up to the cap.
WITH refunded AS (
    UPDATE video_assets
    SET state = 'pending',
        attempts = attempts - 1,
        run_at = coalesce(%(now)s::timestamptz, statement_timestamp()),
        last_error = %(error)s,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, statement_timestamp())
    WHERE id = %(id)s AND state = 'running' AND lease_token = %(token)s
    RETURNING id, generation, attempts
),
pause AS (
    UPDATE queue_pauses AS p
    SET refunded = p.refunded + 1,
        probe_asset = CASE WHEN p.probe_asset = r.id THEN NULL ELSE p.probe_asset END,
        probes = p.probes + CASE WHEN p.probe_asset = r.id THEN 1 ELSE 0 END,
        last_probe_error = CASE WHEN p.probe_asset = r.id THEN %(error)s
                                ELSE p.last_probe_error END,
        probe_interval_seconds = CASE
            WHEN p.probe_asset = r.id
                THEN least(p.probe_interval_seconds * 2, %(probe_max_seconds)s)
            ELSE p.probe_interval_seconds END,
        next_probe_at = CASE
            WHEN p.probe_asset = r.id
                THEN coalesce(%(now)s::timestamptz, statement_timestamp()) + make_interval(
                         secs => least(p.probe_interval_seconds * 2, %(probe_max_seconds)s))
            ELSE p.next_probe_at END
    FROM refunded AS r
    WHERE p.resumed_at IS NULL
    RETURNING p.id
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, 'refunded', attempts + 1, %(owner)s,
           'failed while the queue was paused: ' || %(error)s,
           coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM refunded
)
SELECT id, (SELECT count(*) FROM pause) AS pauses FROM refunded;

-- name: refund_streak
-- The breaker tripped: give back the attempts its streak used up ("counts"[i] of asset
-- "ids"[i]). A pending job is due at once (its backoff was the outage's); a running one
-- keeps the attempt it is on. Failed assets already told their users and stay failed.
WITH refunded AS (
    UPDATE video_assets AS a
    SET attempts = greatest(a.attempts - c.n, CASE WHEN a.state = 'running' THEN 1 ELSE 0 END),
        run_at = CASE WHEN a.state = 'pending' THEN coalesce(%(now)s::timestamptz, statement_timestamp())
                      ELSE a.run_at END,
        updated_at = coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM unnest(%(ids)s::bigint[], %(counts)s::integer[]) AS c(id, n)
    WHERE a.id = c.id AND a.state IN ('pending', 'running')
    RETURNING a.id, a.generation, a.attempts, c.n
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    -- One event per attempt given back, like 'claimed' is one per attempt taken.
    SELECT id, generation, 'refunded', attempts + k, %(owner)s,
           'the breaker paused the queue: its failures do not count',
           coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM refunded, generate_series(1, n) AS k
),
pause AS (
    UPDATE queue_pauses
    SET refunded = refunded + (SELECT coalesce(sum(n), 0) FROM refunded)
    WHERE id = %(pause_id)s AND resumed_at IS NULL
    RETURNING refunded
)
SELECT (SELECT refunded FROM pause) AS refunded;

-- name: queue_notices
-- Tell every admin that the queue paused or resumed: one outbox row per admin and pause
-- (generation = the pause's id; a partial unique index turns a repeat into a no-op).
WITH pause AS (
    SELECT id, detail, paused_at,
           (SELECT count(*) FROM video_assets WHERE state IN ('pending', 'running')) AS waiting
    FROM queue_pauses WHERE id = %(pause_id)s AND announced
),
queued AS (
    INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                               next_attempt_at, created_at, updated_at)
    SELECT NULL, admin, admin, %(kind)s, pause.id,
           jsonb_build_object(
               'error', coalesce(pause.detail, ''),
               'waiting', pause.waiting,
               'paused_seconds', extract(epoch FROM coalesce(%(now)s::timestamptz, statement_timestamp())
                                                    - pause.paused_at)::float8),
           coalesce(%(now)s::timestamptz, statement_timestamp()), coalesce(%(now)s::timestamptz, statement_timestamp()),
           coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM pause CROSS JOIN unnest(%(admins)s::bigint[]) AS admin
    ON CONFLICT (user_id, kind, generation) WHERE asset_id IS NULL DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued,
       CASE WHEN count(*) > 0 THEN pg_notify('vidretry_outbox', '') END AS notified
FROM queued;

-- name: choose_probe
-- While the breaker holds the queue paused, one worker (whichever gets here first once the
-- probe is due and no probe is running) chooses one job to see whether the generator works
-- again, and marks it the pause's probe. Oldest due first, ignoring the retries-first order:
-- a failed probe is due again at once, so successive probes walk through the queue instead
-- of trying one bad job forever. claim_jobs then claims it ("probe"), in the same
-- transaction, with every step and quota of a claim (the caller rolls the choice back when
-- the quotas leave no room, or the generator asked to slow down).
WITH pause AS (
    SELECT p.id
    FROM queue_pauses AS p
    WHERE p.resumed_at IS NULL AND p.reason = 'breaker'
      AND p.next_probe_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
      AND NOT EXISTS (SELECT 1 FROM video_assets AS a
                      WHERE a.id = p.probe_asset AND a.state = 'running')
    FOR UPDATE SKIP LOCKED
),
due AS (
    SELECT a.id
    FROM video_assets AS a
    WHERE a.state = 'pending'
      AND a.run_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
      AND EXISTS (SELECT 1 FROM pause)
    ORDER BY a.run_at, a.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE queue_pauses AS p
SET probe_asset = due.id,
    last_probe_at = coalesce(%(now)s::timestamptz, statement_timestamp()),
    next_probe_at = coalesce(%(now)s::timestamptz, statement_timestamp())
                    + make_interval(secs => p.probe_interval_seconds)
FROM pause, due
WHERE p.id = pause.id AND p.resumed_at IS NULL
RETURNING p.probe_asset;

-- name: next_probe_in
-- While the breaker holds the queue paused: seconds until its next probe is due (0 or less:
-- due now, or a probe runs); no row when no breaker pause is open. A worker with nothing to
-- do wakes for it, so a probe starts when it is due, not at the worker's next upkeep.
SELECT extract(epoch FROM p.next_probe_at
                         - coalesce(%(now)s::timestamptz, statement_timestamp()))::float8
       AS seconds
FROM queue_pauses AS p
WHERE p.resumed_at IS NULL AND p.reason = 'breaker';

-- name: pause_by_hand
-- `vidretry pause`: open a manual pause; a no-op if a pause is open already.
INSERT INTO queue_pauses (reason, detail, paused_by, paused_at)
VALUES ('manual', %(detail)s, %(actor)s, coalesce(%(now)s::timestamptz, statement_timestamp()))
ON CONFLICT ((true)) WHERE resumed_at IS NULL DO NOTHING
RETURNING id;

-- name: hold_breaker_pause
-- `vidretry pause` while the breaker holds the queue paused: the pause becomes manual, so no
-- probe ends it; only `vidretry resume` does.
UPDATE queue_pauses
SET reason = 'manual',
    detail = coalesce(%(detail)s, detail),
    probe_asset = NULL
WHERE resumed_at IS NULL AND reason = 'breaker'
RETURNING id;

-- name: resume_queue
-- End the open pause: `vidretry resume`, or a probe that succeeded (by: the worker, and
-- only if the pause is the breaker's and that job was its probe). The breaker forgets its
-- streak and idle workers are woken at commit.
WITH resumed AS (
    UPDATE queue_pauses
    SET resumed_at = coalesce(%(now)s::timestamptz, statement_timestamp()),
        resumed_by = %(actor)s,
        probe_asset = NULL,
        probes = probes + CASE WHEN %(probe)s::bigint IS NULL THEN 0 ELSE 1 END,
        last_probe_at = CASE WHEN %(probe)s::bigint IS NULL THEN last_probe_at
                             ELSE coalesce(%(now)s::timestamptz, statement_timestamp()) END
    WHERE resumed_at IS NULL
      AND (%(probe)s::bigint IS NULL OR (reason = 'breaker' AND probe_asset = %(probe)s::bigint))
    RETURNING id, reason, paused_at, announced
),
forgotten AS (
    UPDATE breaker SET streak_assets = '{}', streak_times = '{}'
    WHERE id AND EXISTS (SELECT 1 FROM resumed) AND cardinality(streak_assets) > 0
)
SELECT id, reason, announced,
       extract(epoch FROM coalesce(%(now)s::timestamptz, statement_timestamp()) - paused_at)::float8
           AS paused_seconds,
       pg_notify('vidretry_jobs', '') AS notified
FROM resumed;

-- name: queue_pause_state
-- For `status`: the open pause if there is one, else the last one, and the breaker's streak.
SELECT p.id, p.reason, p.detail, p.paused_by, p.paused_at, p.refunded, p.probes,
       p.last_probe_at, p.last_probe_error, p.next_probe_at, p.resumed_at, p.resumed_by,
       (SELECT count(DISTINCT asset) FROM breaker AS b, unnest(b.streak_assets) AS asset)
           AS streak_assets
FROM (SELECT NULL) AS always
LEFT JOIN LATERAL (SELECT * FROM queue_pauses ORDER BY id DESC LIMIT 1) AS p ON true;
