-- Named statements for the retry service (vidretry/queue/retry.py).

-- name: retry_asset
-- The retry service: every rule of it is in the function vidretry_retry_asset (schema 18),
-- which asking again for a failed video and the SQL interface's vidretry_retry call too.
SELECT outcome, state, generation AS retry_round, reopened_users, superseded
FROM vidretry_retry_asset(%(id)s, %(actor)s, %(retry_round)s, %(user_id)s, %(reason)s, %(now)s);

-- name: press_retry
-- The retry button pressed by a Telegram user: the daily retry quota (the admins told when it
-- refuses), then the retry service as that user; every rule of it is in the function
-- vidretry_retry_pressed, which the SQL interface's vidretry_retry and vidretry_press_retry
-- call too.
SELECT outcome, state, generation AS retry_round, reopened_users, superseded
FROM vidretry_retry_pressed(%(id)s, %(user_id)s, %(retry_round)s, %(reason)s, %(now)s);

-- name: failed_asset_ids
-- Every failed asset, for `vidretry retry --all-failed`.
SELECT id FROM video_assets WHERE state = 'failed' ORDER BY id;
