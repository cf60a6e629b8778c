-- Named statements for cancelling (vidretry/queue/cancel.py): a user withdrawing their own
-- request, and an operator cancelling a whole asset. Like jobs.sql: a "now" parameter that
-- is NULL means the database's now().
--
-- Lock order, as everywhere: the asset row first, then its requests, then its outbox rows.
-- Each statement that decides from the requests runs after the asset is locked, in its own
-- snapshot, so it sees every request committed by whoever held the lock before (enqueue
-- locks the asset in vidretry_enqueue_request; a worker finishing the job, in
-- complete_jobs/fail_job).

-- name: withdraw_request
-- One user takes back their request, and when nobody else waits the job is cancelled too:
-- every rule of it is in the function vidretry_withdraw_request (schema 18), which the SQL
-- interface's vidretry_cancel calls too.
SELECT outcome, state, was_running
FROM vidretry_withdraw_request(%(id)s, %(user_id)s, %(generation)s, %(now)s);

-- name: cancel_job
-- An operator's (or an admin's) cancel of a whole asset, whoever waits: the function
-- vidretry_cancel_job (schema 18), which a user's withdrawal uses when nobody waits any more.
-- Its requests follow in cancel_requests_and_queue_notices.
SELECT id, was FROM vidretry_cancel_job(%(id)s, %(actor)s, %(reason)s, false, %(now)s);

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

-- name: open_requests_of_user
-- /cancel: a user's requests that can still be cancelled, newest first.
SELECT a.id, a.name, a.generation
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s AND r.state = 'pending'
ORDER BY r.id DESC
LIMIT %(limit)s;
