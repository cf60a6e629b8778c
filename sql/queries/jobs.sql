-- Named statements for a job's transitions (vidretry/queue/jobs.py; a request's turn:
-- vidretry/queue/enqueue.py; the heartbeat: vidretry/queue/leases.py). Statements that write
-- outbox rows have "queue" in their name, wherever they live (tests/unit/test_sql.py checks).
--
-- Every statement takes a "now" parameter: NULL means "the database's now()", which keeps one clock for
-- all workers on all machines; tests pass a fixed time instead. The failure statements read
-- statement_timestamp() instead (their transaction may wait for the breaker's lock: see
-- fail_job).
--
-- Batches of ids, tokens and results are sent as binary parameters (%(x)b): psycopg dumps a
-- list of 64 of them in a third to a fifth of the time the text format takes.

-- name: enqueue_request
-- Ask for a video: every rule of it is in the function vidretry_enqueue_request_v2, which
-- the SQL interface's vidretry_enqueue calls too. "max_attempts" NULL: the workers'.
SELECT asset_id, state, created, retried, ready_queued, out_of_retries
FROM vidretry_enqueue_request_v2(
    %(name)s, %(user_id)s, %(chat_id)s, %(params)s, %(priority)s,
    coalesce(%(max_attempts)s::integer, (SELECT max_attempts FROM queue_policy)),
    %(actor)s, %(now)s);

-- name: claim_jobs
-- Claim up to "limit" due jobs for one worker in a single statement. With a global quota on
-- ([worker] max_running, max_starts_per_minute: 0 is none) the caller runs it after
-- lock_quota in one transaction, so claims under a quota see each other's starts. "probe"
-- (an asset id; NULL for every other claim): the one job the breaker's choose_probe chose
-- while the queue is paused, claimed by these same steps.
WITH room AS (
    -- How many may start now: the caller's free slots, less what the quotas leave. Each
    -- count is read only when its quota is set. A generator that still runs for a job that
    -- was cancelled or rescued takes its slot until it is gone (generators_stopping).
    SELECT least(
        %(limit)s::integer,
        CASE WHEN %(max_running)s::integer > 0
             THEN greatest(0, %(max_running)s::integer
                              - (SELECT count(*) FROM video_assets WHERE state = 'running')
                              - (SELECT count(*) FROM generators_stopping
                                 WHERE gone_by > coalesce(%(now)s::timestamptz,
                                                          statement_timestamp())))
             ELSE %(limit)s::integer END,
        CASE WHEN %(max_starts)s::integer > 0
             THEN (SELECT count(*) FROM start_tokens
                   WHERE id <= %(max_starts)s::integer
                     AND free_at <= coalesce(%(now)s::timestamptz, statement_timestamp()))
             ELSE %(limit)s::integer END) AS n
),
claimable AS (
    -- Nothing is claimed while a pause is open (breaker.sql; a probe alone is) or while the
    -- generator asked every worker to slow down (generator_hold). "streak": the assets whose
    -- attempts failed since the last success, the breaker's streak (empty while a pause is
    -- open, or with the breaker off).
    SELECT (%(probe)s::bigint IS NOT NULL
            OR NOT EXISTS (SELECT 1 FROM queue_pauses WHERE resumed_at IS NULL))
           AND NOT EXISTS (SELECT 1 FROM generator_hold
                           WHERE until > coalesce(%(now)s::timestamptz, statement_timestamp()))
           AS open,
           coalesce((SELECT streak_assets FROM breaker WHERE id), '{}') AS streak
),
due AS (
    -- Higher priority first; within a priority retried jobs (generation > 0: the retry
    -- service put them back, a user waits for them), then by turn (the fair order, schema
    -- 17), then oldest due first. SKIP LOCKED lets concurrent workers take disjoint rows
    -- without waiting on each other; the partial index video_assets_claimable serves this
    -- scan in this order. The assets of the breaker's streak wait in "again".
    SELECT id
    FROM video_assets
    WHERE state = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
      AND (%(probe)s::bigint IS NULL OR id = %(probe)s::bigint)
      AND (SELECT open FROM claimable)
      AND id <> ALL ((SELECT streak FROM claimable)::bigint[])
    ORDER BY priority DESC, (generation = 0), turn, run_at, id
    LIMIT (SELECT n FROM room)
    FOR UPDATE SKIP LOCKED
),
again AS (
    -- While every attempt fails (no success since), an asset that failed in the streak is
    -- tried again only when no other job is due, in the same order: the breaker tells a
    -- broken generator from a bad job by failures on min_assets different assets, and
    -- retrying the same few whenever their backoff ends before an attempt does (a slow
    -- generator, a busy machine) would fail them for good before it could.
    SELECT id
    FROM video_assets
    WHERE state = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
      AND (%(probe)s::bigint IS NULL OR id = %(probe)s::bigint)
      AND (SELECT open FROM claimable)
      AND id = ANY ((SELECT streak FROM claimable)::bigint[])
    ORDER BY priority DESC, (generation = 0), turn, run_at, id
    LIMIT (SELECT n FROM room) - (SELECT count(*) FROM due)
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    -- The attempt is counted now, not at completion, so a crash mid-job still uses it up.
    UPDATE video_assets AS a
    SET state = 'running',
        attempts = a.attempts + 1,
        progress = NULL,  -- the new attempt has reported nothing yet
        lease_owner = %(owner)s,
        lease_token = gen_random_uuid(),
        lease_expires_at = coalesce(%(now)s::timestamptz, statement_timestamp())
                           + make_interval(secs => %(lease_seconds)s),
        updated_at = coalesce(%(now)s::timestamptz, statement_timestamp())
    -- An array rather than a join: its plan does not depend on the LIMIT, so the statement
    -- can keep one prepared (generic) plan instead of being planned on every call.
    WHERE a.id = ANY (ARRAY(SELECT id FROM due) || ARRAY(SELECT id FROM again))
    RETURNING a.id, a.name, a.params, a.attempts, a.max_attempts, a.generation, a.lease_token
),
spent AS (
    -- Each start takes a free token for the quota's window, a minute unless configured
    -- otherwise (none without the quota).
    UPDATE start_tokens AS t
    SET free_at = coalesce(%(now)s::timestamptz, statement_timestamp())
                  + make_interval(secs => %(start_window)s)
    WHERE t.id = ANY (ARRAY(
              SELECT id FROM start_tokens
              WHERE id <= %(max_starts)s::integer
                AND free_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
              ORDER BY id
              LIMIT (SELECT count(*) FROM claimed)))
      AND t.free_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, 'claimed', attempts, %(owner)s,
           CASE WHEN %(probe)s::bigint IS NOT NULL THEN 'probe: the queue is paused' END,
           coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM claimed
)
-- The column "generation" is the job's retry round (vidretry.models.ClaimedJob.retry_round).
SELECT id, name, params, attempts, max_attempts, generation AS retry_round, lease_token,
       %(probe)s::bigint IS NOT NULL AS probe
FROM claimed
ORDER BY id;

-- name: lock_quota
-- Claims under a global quota take turns: this lock, held to the end of the claim's
-- transaction, makes the claim that follows (a new statement, so a new snapshot) see every
-- start committed before it. Counting under it is exact, as slots would be, and costs the
-- claims without a quota nothing.
SELECT pg_advisory_xact_lock(hashtext('vidretry quota')) IS NOT NULL AS locked;

-- name: provide_start_tokens
-- [worker] max_starts_per_minute = N needs N tokens: a worker adds the missing ones at start.
INSERT INTO start_tokens (id, free_at)
SELECT n, '-infinity' FROM generate_series(1, %(n)s::integer) AS n
ON CONFLICT (id) DO NOTHING;

-- name: set_queue_policy
-- A worker's [queue] fair and [worker] max_attempts, written when it starts (every enqueue
-- follows them, from whatever program); returns the order that was there before.
WITH old AS (SELECT fair FROM queue_policy WHERE id FOR UPDATE)
UPDATE queue_policy AS q
SET fair = %(fair)s, max_attempts = %(max_attempts)s, set_by = %(owner)s,
    set_at = coalesce(%(now)s::timestamptz, now())
FROM old
WHERE q.id AND (q.fair, q.max_attempts) IS DISTINCT FROM (%(fair)s, %(max_attempts)s)
RETURNING old.fair AS was_fair;

-- name: extend_leases
-- Heartbeat for every job a worker is running, in one statement. A job missing from the
-- result lost its lease (it expired and was rescued): the worker stops working on it.
-- Fencing a batch: a lease token is random and new for every claim, so a row whose token is
-- among the batch's tokens holds the lease this worker was given for it. Matching the two
-- arrays as sets instead of joining them pairwise keeps the plan an index lookup by id
-- whatever the batch's size, so one prepared plan serves every call.
UPDATE video_assets
SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(lease_seconds)s),
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = ANY (%(ids)b::bigint[]) AND state = 'running' AND lease_token = ANY (%(tokens)b::uuid[])
RETURNING id;

-- name: complete_jobs
-- Success for a batch of jobs in one statement, each fenced by its own lease token (as in
-- extend_leases): a job whose lease was lost is simply not in the result. Requests and
-- 'ready' rows follow in settle_requests_and_queue_notifications, a separate statement so
-- that its snapshot sees every request committed before these row locks were taken.
-- The result is the kept video's URI, with its size and SHA-256 (schema 19).
WITH done AS (
    UPDATE video_assets AS a
    SET state = 'available',
        -- results[i], sizes[i] and hashes[i] are those of ids[i]
        result = (%(results)b::text[])[array_position(%(ids)b::bigint[], a.id)],
        result_size = (%(sizes)b::bigint[])[array_position(%(ids)b::bigint[], a.id)],
        result_sha256 = (%(hashes)b::bytea[])[array_position(%(ids)b::bigint[], a.id)],
        result_deleted_at = NULL,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        finished_at = coalesce(%(now)s::timestamptz, now()),
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE a.id = ANY (%(ids)b::bigint[]) AND a.state = 'running'
      AND a.lease_token = ANY (%(tokens)b::uuid[])
    RETURNING a.id, a.generation, a.attempts, a.result
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, 'succeeded', attempts, %(owner)s, result,
           coalesce(%(now)s::timestamptz, now())
    FROM done
),
forgotten AS (
    -- A success ends the circuit breaker's streak of failures (breaker.sql). The row is
    -- only written when there is a streak to forget, so successes do not contend for it.
    UPDATE breaker SET streak_assets = '{}', streak_times = '{}'
    WHERE id AND cardinality(streak_assets) > 0 AND EXISTS (SELECT 1 FROM done)
),
store_back AS (
    -- A success is a video kept: whatever outage of the video store there was is over,
    -- whichever worker saw it (results.sql), so status stops showing it and the next outage
    -- is a new one, told in its turn. Without an outage there is no row to lock.
    DELETE FROM store_outage WHERE id AND EXISTS (SELECT 1 FROM done)
)
SELECT id FROM done;

-- name: schedule_next_attempt
-- A failed attempt with attempts left: back to pending after a backoff, error kept. (Not
-- the retry service, retry.sql, which puts a failed-for-good asset back in the queue.)
-- Timed by the statement, like fail_job.
WITH retried AS (
    UPDATE video_assets
    SET state = 'pending',
        run_at = coalesce(%(now)s::timestamptz, statement_timestamp()) + make_interval(secs => %(backoff_seconds)s),
        last_error = %(error)s,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, statement_timestamp())
    WHERE id = %(id)s AND state = 'running' AND lease_token = %(token)s
      AND attempts < max_attempts
    RETURNING id, generation, attempts, run_at
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, 'attempt_failed', attempts, %(owner)s, %(error)s,
           coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM retried
)
SELECT id, run_at FROM retried;

-- name: fail_job
-- The final failure of a retry round, fenced by the lease token. Runs in one transaction
-- with settle_requests_and_queue_notifications, which fails the waiting requests and
-- writes one outbox row per user.
-- A NULL error keeps the error already recorded (a lost lease, by the rescuer).
-- Timed by the statement, not by its transaction's start, as schedule_next_attempt: the
-- failure's transaction may have waited for the circuit breaker's lock (breaker.sql), and
-- its record comes after every pause and resume the breaker's verdict saw.
WITH failed AS (
    UPDATE video_assets
    SET state = 'failed',
        last_error = coalesce(%(error)s::text, last_error),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        finished_at = coalesce(%(now)s::timestamptz, statement_timestamp()),
        updated_at = coalesce(%(now)s::timestamptz, statement_timestamp())
    WHERE id = %(id)s AND state = 'running' AND lease_token = %(token)s
    RETURNING id, generation, attempts, last_error
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, 'failed', attempts, %(owner)s, last_error,
           coalesce(%(now)s::timestamptz, statement_timestamp())
    FROM failed
)
SELECT id, generation AS retry_round FROM failed;

-- name: settle_requests_and_queue_notifications
-- Close every waiting request of finished assets and queue one notification per user.
-- The kind is 'ready' (requests become 'done') or 'failed' (requests become 'failed').
-- Only assets in the matching final state are settled, so the statement can be sent in
-- the same round trip as the one that finished them: an asset whose lease was lost is
-- still running (left alone), and one settled before has no waiting request left.
WITH asset AS (
    SELECT id, name, generation, result FROM video_assets
    WHERE id = ANY(%(ids)b::bigint[])
      AND state = CASE WHEN %(kind)s = 'ready' THEN 'available' ELSE 'failed' END
),
settled AS (
    -- Returns what the outbox row needs, so it is not joined to "asset" a second time.
    UPDATE user_requests AS r
    SET state = CASE WHEN %(kind)s = 'ready' THEN 'done' ELSE 'failed' END,
        updated_at = coalesce(%(now)s::timestamptz, now())
    FROM asset
    WHERE r.asset_id = asset.id AND r.state = 'pending'
    RETURNING r.asset_id, r.user_id, r.chat_id, asset.generation,
              jsonb_build_object('name', asset.name, 'result', asset.result) AS payload
),
queued AS (
    -- The unique key (asset, user, kind, generation) turns a repeat into a no-op.
    INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                               next_attempt_at, created_at, updated_at)
    SELECT asset_id, user_id, chat_id, %(kind)s, generation, payload,
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
           coalesce(%(now)s::timestamptz, now())
    FROM settled
    ON CONFLICT (asset_id, user_id, kind, generation) DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued,
       -- Wake the notifiers; delivered at commit, and only if something was queued.
       CASE WHEN count(*) > 0 THEN pg_notify('vidretry_outbox', '') END AS notified
FROM queued;

-- name: record_progress
-- A generator's progress report for the running attempt (0 to 1), fenced by the lease token
-- and written at most every [worker] progress_write_seconds; the notifiers are woken at
-- commit to show it. A report equal to the last one writes nothing.
UPDATE video_assets
SET progress = %(progress)s
WHERE id = %(id)s AND state = 'running' AND lease_token = %(token)s
  AND progress IS DISTINCT FROM %(progress)s::real
RETURNING id, pg_notify('vidretry_progress', id::text) AS notified;

-- name: generator_gone
-- A worker whose lease was lost (its job cancelled, or rescued) has stopped the generator:
-- its slot of max_running is free (generators_stopping), and the workers waiting for one
-- are woken. Says whether the job was cancelled (rather than rescued).
WITH gone AS (
    DELETE FROM generators_stopping WHERE lease_token = %(token)s RETURNING asset_id
)
SELECT (SELECT state FROM video_assets WHERE id = %(id)s) = 'cancelled' AS cancelled,
       CASE WHEN EXISTS (SELECT 1 FROM gone) THEN pg_notify('vidretry_jobs', '') END AS woken;

-- name: note_generators_stopping
-- Before a rescue: the generator of a job whose lease ran out may still be being stopped by
-- its worker (that gives the job up as its lease ends, then stops it): it keeps its slot of
-- max_running until that worker says it is gone, or until a stop's grace after the lease
-- (generators_stopping). Rows past theirs go.
WITH gone AS (
    DELETE FROM generators_stopping WHERE gone_by <= coalesce(%(now)s::timestamptz, now())
)
INSERT INTO generators_stopping (lease_token, asset_id, owner, gone_by)
SELECT lease_token, id, lease_owner, vidretry_generator_gone_by(lease_expires_at)
FROM video_assets
WHERE state = 'running' AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
  AND vidretry_generator_gone_by(lease_expires_at) > coalesce(%(now)s::timestamptz, now())
ON CONFLICT (lease_token) DO NOTHING;

-- name: rescue_expired_jobs
-- Jobs whose worker died or hung past its lease, with attempts left: back to pending at once.
-- The lost attempt was counted when it was claimed.
WITH expired AS (
    -- At most "limit" per statement: after a mass crash, the caller repeats until a batch
    -- comes back short, so no statement holds thousands of row locks at once.
    SELECT id
    FROM video_assets
    WHERE state = 'running' AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
      AND attempts < max_attempts
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE video_assets AS a
    SET state = 'pending',
        run_at = coalesce(%(now)s::timestamptz, now()),
        last_error = 'lease of ' || a.lease_owner || ' expired (worker lost)',
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, now())
    FROM expired
    WHERE a.id = expired.id
    RETURNING a.id, a.generation, a.attempts, a.last_error
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, 'rescued', attempts, %(owner)s, last_error,
           coalesce(%(now)s::timestamptz, now())
    FROM rescued
)
SELECT id FROM rescued ORDER BY id;

-- name: take_over_exhausted_jobs
-- Jobs whose lease expired on their last attempt must fail for good. The rescuer takes their
-- lease (a fresh token, attempts unchanged) and then fails them through fail_job, the same
-- fenced path a worker uses.
WITH expired AS (
    SELECT id
    FROM video_assets
    WHERE state = 'running' AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
      AND attempts >= max_attempts
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE video_assets AS a
SET lease_owner = %(owner)s,
    lease_token = gen_random_uuid(),
    lease_expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(lease_seconds)s),
    last_error = 'lease of ' || a.lease_owner || ' expired (worker lost)',
    updated_at = coalesce(%(now)s::timestamptz, now())
FROM expired
WHERE a.id = expired.id
RETURNING a.id, a.name, a.params, a.attempts, a.max_attempts, a.generation AS retry_round,
          a.lease_token,
          false AS probe;

-- name: give_back_job
-- Hand a job back without charging the attempt it is on, fenced by the lease token: pending
-- again, due at once, its turn kept. Two transitions share it ("kind"):
--   'released': a graceful shutdown could not wait for it;
--   'rate_limited': the generator said "slow down" (an API's 429, a full GPU pool). Not a
--     failure: it never moves a job towards failed however often it happens, the circuit
--     breaker never sees it, and every worker holds off new starts for "hold_seconds" — a
--     hold is only ever extended, never cut short. Then the job is first in its round.
WITH given_back AS (
    UPDATE video_assets
    SET state = 'pending',
        attempts = attempts - 1,
        run_at = coalesce(%(now)s::timestamptz, now()),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE id = %(id)s AND state = 'running' AND lease_token = %(token)s
    RETURNING id, generation, attempts
),
held AS (
    INSERT INTO generator_hold AS h (until, detail, held_by, held_at)
    SELECT coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(hold_seconds)s),
           %(detail)s, %(owner)s, coalesce(%(now)s::timestamptz, now())
    FROM given_back
    WHERE %(hold_seconds)s::float8 IS NOT NULL
    ON CONFLICT (id) DO UPDATE
    SET until = greatest(h.until, excluded.until),
        detail = CASE WHEN excluded.until > h.until THEN excluded.detail ELSE h.detail END,
        held_by = CASE WHEN excluded.until > h.until THEN excluded.held_by ELSE h.held_by END,
        held_at = CASE WHEN excluded.until > h.until THEN excluded.held_at ELSE h.held_at END
    RETURNING until
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, detail, created_at)
    SELECT id, generation, %(kind)s, attempts + 1, %(owner)s, %(detail)s,
           coalesce(%(now)s::timestamptz, now())
    FROM given_back
)
SELECT id, (SELECT until FROM held) AS held_until FROM given_back;

-- name: drain_outlook
-- What --drain waits for: pending jobs (due now or after a backoff) and expired leases;
-- and who holds the queue paused, if anyone (an operator, or the circuit breaker): nothing
-- would run until that pause ends, so a drain does not wait for it. A generator's "slow
-- down" hold ends by itself: the next job is due when both it and its backoff are over.
-- Each part reads one partial index, however many finished assets there are.
SELECT (SELECT CASE reason WHEN 'breaker' THEN 'the circuit breaker' ELSE paused_by END
        FROM queue_pauses WHERE resumed_at IS NULL
        ORDER BY paused_at LIMIT 1) AS paused_by,
       (SELECT count(*) FROM video_assets WHERE state = 'pending') AS pending,
       (SELECT count(*) FROM video_assets
        WHERE state = 'running'
          AND lease_expires_at < coalesce(%(now)s::timestamptz, now())) AS expired,
       greatest(0, extract(epoch FROM greatest((SELECT min(run_at) FROM video_assets
                                                WHERE state = 'pending'),
                                               (SELECT until FROM generator_hold))
                                      - coalesce(%(now)s::timestamptz, now())))::float8
           AS next_due_in;
