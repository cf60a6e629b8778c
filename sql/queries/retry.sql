-- Named statements for the retry service (vidretry/retry.py).

-- name: retry_asset
-- The retry service: every rule of it is in the function vidretry_retry_asset (schema 18),
-- which asking again for a failed video and the SQL interface's vidretry_retry call too.
SELECT outcome, state, generation, reopened_users, superseded
FROM vidretry_retry_asset(%(id)s, %(actor)s, %(generation)s, %(user_id)s, %(reason)s, %(now)s);

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
