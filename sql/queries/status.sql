-- Named read-only statements for `vidretry status`, `list` and `show`.

-- name: state_counts
-- Assets by state. pending, running, failed and cancelled are counted exactly, each from its
-- partial index. available only grows: it is counted exactly while the table is small, and
-- beyond 100,000 rows estimated from the planner's row count (pg_class.reltuples, which
-- autovacuum keeps current) less the others — counting a million finished rows costs a
-- dashboard a quarter of a second on every refresh.
WITH counts AS (
    SELECT (SELECT count(*) FROM video_assets WHERE state = 'pending') AS pending,
           (SELECT count(*) FROM video_assets WHERE state = 'running') AS running,
           (SELECT count(*) FROM video_assets WHERE state = 'failed') AS failed,
           (SELECT count(*) FROM video_assets WHERE state = 'cancelled') AS cancelled,
           (SELECT reltuples::bigint FROM pg_class
            WHERE oid = 'video_assets'::regclass) AS estimated_rows
)
SELECT pending, running,
       CASE WHEN estimated_rows < 100000
            THEN (SELECT count(*) FROM video_assets WHERE state = 'available')
            ELSE greatest(0, estimated_rows - pending - running - failed - cancelled)
       END AS available,
       failed, cancelled,
       estimated_rows >= 100000 AS available_estimated
FROM counts;

-- name: queue_summary
-- Oldest due pending job, failures in the last hour (the history's BRIN index on time) and
-- the outbox's backlog and dead rows: each from an index, however much history there is.
SELECT (SELECT min(run_at) FROM video_assets WHERE state = 'pending') AS oldest_pending,
       (SELECT count(*) FROM job_events
        WHERE kind = 'failed'
          AND created_at > coalesce(%(now)s::timestamptz, now()) - interval '1 hour') AS failed_last_hour,
       -- Two counts, each from its partial index (an IN list would read every row).
       (SELECT count(*) FROM notifications WHERE state = 'pending')
       + (SELECT count(*) FROM notifications WHERE state = 'sending') AS outbox_backlog,
       (SELECT count(*) FROM notifications WHERE state = 'dead') AS outbox_dead;

-- name: queue_shape
-- The claim order's facts for `status` and the console: the order the workers set, pending
-- jobs by priority (from the claim index), a generator's "slow down" hold while it lasts,
-- the starts in the last 60 seconds (the spent tokens of max_starts_per_minute), and an
-- outage of the video store while it lasts (workers hold their finished videos).
SELECT (SELECT fair FROM queue_policy) AS fair,
       (SELECT coalesce(jsonb_object_agg(priority, n), '{}')
        FROM (SELECT priority, count(*) AS n FROM video_assets
              WHERE state = 'pending' GROUP BY priority) AS p) AS pending_by_priority,
       (SELECT until FROM generator_hold
        WHERE until > coalesce(%(now)s::timestamptz, now())) AS rate_limited_until,
       (SELECT detail FROM generator_hold
        WHERE until > coalesce(%(now)s::timestamptz, now())) AS rate_limited_why,
       (SELECT count(*) FROM start_tokens
        WHERE free_at > coalesce(%(now)s::timestamptz, now())) AS starts_last_minute,
       (SELECT since FROM store_outage) AS store_down_since,
       (SELECT detail FROM store_outage) AS store_down_why;

-- name: list_assets
SELECT id, name, state, priority, attempts, max_attempts, generation AS retry_round, last_error,
       updated_at
FROM video_assets
WHERE %(state)s::text IS NULL OR state = %(state)s::text
ORDER BY id
LIMIT %(limit)s;

-- name: show_asset
-- With what was recorded of the kept video: what an operator checks when a user says the
-- video is broken (the SHA-256 in hex, as sha256sum prints it).
SELECT id, name, params, state, priority, owner, turn, attempts, max_attempts,
       generation AS retry_round, run_at, lease_owner,
       lease_expires_at, last_error, result, result_size,
       encode(result_sha256, 'hex') AS result_sha256, result_deleted_at,
       created_at, updated_at, finished_at
FROM video_assets
WHERE id = %(id)s;

-- name: asset_requests
SELECT user_id, chat_id, state, created_at, updated_at
FROM user_requests WHERE asset_id = %(id)s ORDER BY id;

-- name: asset_notifications
SELECT id, user_id, chat_id, kind, generation AS retry_round, state, attempts, next_attempt_at,
       last_error, telegram_message_id, sent_at, created_at
FROM notifications WHERE asset_id = %(id)s ORDER BY id;

-- name: asset_events
SELECT kind, generation AS retry_round, attempt, actor, detail, created_at
FROM job_events WHERE asset_id = %(id)s ORDER BY id;

-- name: running_jobs
-- Running jobs with when they were claimed, for `status --watch`; ages use the database's
-- clock, which is the one leases are measured by.
SELECT a.id, a.name, a.attempts, a.max_attempts, a.lease_owner, a.lease_expires_at,
       (SELECT max(e.created_at) FROM job_events AS e
        WHERE e.asset_id = a.id AND e.kind = 'claimed') AS claimed_at,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM video_assets AS a
WHERE a.state = 'running'
ORDER BY a.lease_expires_at
LIMIT %(limit)s;

-- name: queue_depth
-- For /metrics, every few seconds. Each count is served by a partial index (claimable,
-- leases, failed; the outbox's due and leases), so it stays cheap however many finished
-- assets and sent notifications pile up. The available assets are not counted: they only
-- grow.
SELECT (SELECT count(*) FROM video_assets WHERE state = 'pending') AS pending,
       (SELECT count(*) FROM video_assets WHERE state = 'running') AS running,
       (SELECT count(*) FROM video_assets WHERE state = 'failed') AS failed,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now())
               - (SELECT min(run_at) FROM video_assets WHERE state = 'pending'))::float8
           AS oldest_pending_seconds,
       (SELECT count(*) FROM notifications WHERE state = 'pending') AS outbox_pending,
       (SELECT count(*) FROM notifications WHERE state = 'sending') AS outbox_sending,
       EXISTS (SELECT 1 FROM queue_pauses WHERE resumed_at IS NULL) AS paused;

-- name: place_in_line
-- A pending request's place in the claim's order, how many run now, and the median of the
-- recent attempts' durations: the function vidretry_place_in_line (schema 18), which the SQL
-- interface's vidretry_asset shows too. No row for an asset that is not pending.
SELECT place, running, median_seconds FROM vidretry_place_in_line(%(id)s);
