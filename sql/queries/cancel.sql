-- Named statements for cancelling (vidretry/queue/cancel.py): a user withdrawing their own
-- request, and an operator cancelling a whole asset. Like jobs.sql: a "now" parameter that
-- is NULL means the database's now().
--
-- Lock order, as everywhere: the asset row first, then its requests, then its outbox rows.
-- Each statement that decides from the requests runs after the asset is locked, in its own
-- snapshot, so it sees every request committed by whoever held the lock before (enqueue
-- locks the asset in vidretry_enqueue_request_v2; a worker finishing the job, in
-- complete_jobs/fail_job).

-- name: withdraw_request
-- One user takes back their request, and when nobody else waits the job is cancelled too:
-- every rule of it is in the function vidretry_withdraw_request (schema 18), which the SQL
-- interface's vidretry_cancel calls too.
SELECT outcome, state, was_running
FROM vidretry_withdraw_request(%(id)s, %(user_id)s, %(retry_round)s, %(now)s);

-- name: cancel_asset
-- An operator's (or an admin's) cancel of a whole asset, whoever waits: every rule of it, the
-- waiting users told and the answer when nothing changed, is in the function
-- vidretry_cancel_asset.
SELECT outcome, state, was_running, told_users
FROM vidretry_cancel_asset(%(id)s, %(actor)s, %(reason)s, %(now)s);

-- name: open_requests_of_user
-- /cancel: a user's requests that can still be cancelled, newest first.
SELECT a.id, a.name, a.generation AS retry_round
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s AND r.state = 'pending'
ORDER BY r.id DESC
LIMIT %(limit)s;
