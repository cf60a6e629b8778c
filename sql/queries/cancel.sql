-- Named statements for cancelling (vidretry/queue/cancel.py): a user withdrawing their own
-- request, and an operator cancelling a whole asset. Like jobs.sql: a "now" parameter that
-- is NULL means the database's now().
--
-- Lock order, as everywhere: the asset row first, then its requests, then its outbox rows.
-- Each statement that decides from the requests runs after the asset is locked, in its own
-- snapshot, so it sees every request committed by whoever held the lock before (enqueue
-- locks the asset in upsert_asset; a worker finishing the job, in complete_jobs/fail_job).

-- name: withdraw_request
-- One user takes back their request: a waiting one, or one whose video or failure message
-- has not gone out yet (that message is superseded next). The asset row is locked first.
-- A button names the generation it was made for: one from before a retry or a re-opening
-- changes nothing.
WITH asset AS (
    SELECT id, generation FROM video_assets WHERE id = %(id)s FOR UPDATE
),
withdrawn AS (
    UPDATE user_requests AS r
    SET state = 'cancelled', updated_at = coalesce(%(now)s::timestamptz, now())
    FROM asset
    WHERE r.asset_id = asset.id AND r.user_id = %(user_id)s
      AND (%(generation)s::integer IS NULL OR asset.generation = %(generation)s::integer)
      AND (r.state = 'pending'
           OR (r.state IN ('done', 'failed') AND EXISTS (
                   SELECT 1 FROM notifications AS n
                   WHERE n.asset_id = r.asset_id AND n.user_id = r.user_id
                     AND n.kind IN ('ready', 'failed') AND n.state = 'pending')))
    RETURNING r.asset_id, asset.generation
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
    SELECT asset_id, generation, 'withdrawn', %(actor)s, coalesce(%(now)s::timestamptz, now())
    FROM withdrawn
)
SELECT asset_id FROM withdrawn;

-- name: supersede_withdrawn_notifications
-- After withdraw_request, in its transaction: the user's video or failure message that has
-- not gone out is never sent. One being sent right now is left alone (as after a retry).
UPDATE notifications
SET state = 'superseded',
    last_error = 'the request was cancelled',
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE asset_id = %(id)s AND user_id = %(user_id)s AND kind IN ('ready', 'failed')
  AND state = 'pending'
RETURNING id;

-- name: cancel_job
-- Cancel a job still to be made or being made: a pending one is never claimed; a running one
-- loses its lease (its worker's heartbeat notices and stops the generator) and the attempt
-- it was charged at the claim is given back. With "unwanted" (after withdraw_request, in its
-- transaction) only when nobody waits for it any more; without, an operator's (or an
-- admin's) cancel of the whole asset, whoever waits — its requests follow in
-- cancel_requests_and_queue_notices. The asset row is locked first either way.
WITH old AS (
    SELECT id, state, lease_owner FROM video_assets WHERE id = %(id)s FOR UPDATE
),
cancelled AS (
    UPDATE video_assets AS a
    SET state = 'cancelled',
        attempts = CASE WHEN a.state = 'running' THEN a.attempts - 1 ELSE a.attempts END,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, progress = NULL,
        finished_at = coalesce(%(now)s::timestamptz, now()),
        updated_at = coalesce(%(now)s::timestamptz, now())
    FROM old
    WHERE a.id = old.id AND a.state IN ('pending', 'running')
      AND (NOT %(unwanted)s OR NOT EXISTS (SELECT 1 FROM user_requests AS r
                                           WHERE r.asset_id = a.id AND r.state = 'pending'))
    RETURNING a.id, a.generation, old.state AS was, old.lease_owner
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, actor, detail, created_at)
    SELECT id, generation, 'cancelled', %(actor)s,
           nullif(concat_ws('; ',
                            coalesce(%(reason)s::text,
                                     CASE WHEN %(unwanted)s THEN 'nobody waits any more' END),
                            CASE WHEN was = 'running' THEN 'stopped on ' || lease_owner END), ''),
           coalesce(%(now)s::timestamptz, now())
    FROM cancelled
)
SELECT id, was FROM cancelled;

-- name: cancel_requests_and_queue_notices
-- After an operator's cancel_job, in its own snapshot: every request still waiting is cancelled and its
-- user told, one 'cancelled' outbox row each.
WITH asset AS (
    SELECT id, name, generation FROM video_assets WHERE id = %(id)s AND state = 'cancelled'
),
settled AS (
    UPDATE user_requests AS r
    SET state = 'cancelled', updated_at = coalesce(%(now)s::timestamptz, now())
    FROM asset
    WHERE r.asset_id = asset.id AND r.state = 'pending'
    RETURNING r.asset_id, r.user_id, r.chat_id, asset.generation,
              jsonb_build_object('name', asset.name) AS payload
),
queued AS (
    INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                               next_attempt_at, created_at, updated_at)
    SELECT asset_id, user_id, chat_id, 'cancelled', generation, payload,
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
           coalesce(%(now)s::timestamptz, now())
    FROM settled
    ON CONFLICT (asset_id, user_id, kind, generation) DO NOTHING
    RETURNING user_id
)
SELECT coalesce(array_agg(user_id ORDER BY user_id), '{}') AS users,
       CASE WHEN count(*) > 0 THEN pg_notify('vidretry_outbox', %(id)s::text) END AS notified
FROM queued;

-- name: cancel_refusal
-- Why a cancel changed nothing: read only to word the answer, never to decide a change.
SELECT a.state,
       (SELECT r.state FROM user_requests AS r
        WHERE r.asset_id = a.id AND r.user_id = %(user_id)s::bigint) AS request_state
FROM video_assets AS a
WHERE a.id = %(id)s;

-- name: reopen_cancelled
-- Somebody asks again for a cancelled asset: it is made afresh, as a new generation with
-- all its attempts (enqueue, with the asset locked by upsert_asset).
WITH reopened AS (
    UPDATE video_assets
    SET state = 'pending',
        attempts = 0,
        run_at = coalesce(%(now)s::timestamptz, now()),
        generation = generation + 1,
        finished_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE id = %(id)s AND state = 'cancelled'
    RETURNING id, generation
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
    SELECT id, generation, 'reopened', %(actor)s, coalesce(%(now)s::timestamptz, now())
    FROM reopened
)
SELECT id, generation, pg_notify('vidretry_jobs', id::text) AS notified FROM reopened;

-- name: open_requests_of_user
-- /cancel: a user's requests that can still be cancelled, newest first.
SELECT a.id, a.name, a.generation
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s AND r.state = 'pending'
ORDER BY r.id DESC
LIMIT %(limit)s;
