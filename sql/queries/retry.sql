-- Named statements for the retry service (vidretry/retry.py).

-- name: retry_job
-- Move a failed asset back to the queue, exactly once. Every condition that makes a retry
-- legal is in the WHERE clause, so of N concurrent callers exactly one gets a row back:
-- the asset is failed; the button's generation (if any) is still the current one; and a
-- Telegram actor (if any) has a request on the asset.
WITH retried AS (
    UPDATE video_assets AS a
    SET state = 'pending',
        attempts = 0,
        run_at = coalesce(%(now)s::timestamptz, now()),
        generation = a.generation + 1,
        finished_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE a.id = %(id)s
      AND a.state = 'failed'
      AND (%(generation)s::integer IS NULL OR a.generation = %(generation)s::integer)
      AND (%(user_id)s::bigint IS NULL OR EXISTS (
              SELECT 1 FROM user_requests AS r
              WHERE r.asset_id = a.id AND r.user_id = %(user_id)s::bigint))
    RETURNING a.id, a.generation
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, actor, detail, created_at)
    SELECT id, generation, 'retried', %(actor)s, %(reason)s, coalesce(%(now)s::timestamptz, now())
    FROM retried
)
SELECT id, generation, pg_notify('vidretry_jobs', id::text) AS notified FROM retried;

-- name: reopen_requests
-- After retry_job: the users who were told about the failure wait again. A separate
-- statement, so its snapshot includes requests failed by a transaction that held the lock.
UPDATE user_requests
SET state = 'pending', updated_at = coalesce(%(now)s::timestamptz, now())
WHERE asset_id = %(id)s AND state = 'failed'
RETURNING user_id;

-- name: supersede_failure_notifications
-- After retry_job, in its transaction: the failure messages of this asset that were not sent
-- yet are no longer true (the video is being made again), so they are never sent. One being
-- sent right now is left alone: it may still arrive, and if it comes back unsent, the
-- notifier supersedes it then (reschedule_notification).
UPDATE notifications
SET state = 'superseded',
    last_error = 'superseded by a retry',
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE asset_id = %(id)s AND kind = 'failed' AND state = 'pending'
RETURNING user_id;

-- name: retry_refusal
-- Why retry_job changed nothing: read only to word the answer, never to decide a change.
SELECT a.state, a.generation,
       EXISTS (SELECT 1 FROM user_requests AS r
               WHERE r.asset_id = a.id AND r.user_id = %(user_id)s::bigint) AS has_request
FROM video_assets AS a
WHERE a.id = %(id)s;

-- name: failed_asset_ids
-- Every failed asset, for `vidretry retry --all-failed`.
SELECT id FROM video_assets WHERE state = 'failed' ORDER BY id;
