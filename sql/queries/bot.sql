-- Named statements for the bot's conversations (vidretry/telegram/conversation.py,
-- vidretry/telegram/limits.py). Like jobs.sql: a "now" parameter that is NULL means the
-- database's now().

-- name: user_open_requests
-- How many of a user's requests still wait (their asset pending or running), and whether
-- they asked for this name before (asking again is not a new request). Read only to word
-- an answer; the limit is a courtesy to the generator, not an invariant.
SELECT count(*) FILTER (WHERE r.state = 'pending') AS open,
       coalesce(bool_or(a.name = %(name)s), false) AS asked_before
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s;

-- name: asset_by_name
SELECT id, state, generation AS retry_round FROM video_assets WHERE name = %(name)s;

-- name: user_requests_newest
-- /my: a user's requests, newest first (the index user_requests_by_user serves it).
SELECT a.id, a.name, a.state, a.generation AS retry_round, r.state AS request_state
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s
ORDER BY r.id DESC
LIMIT %(limit)s;

-- name: latest_failed
-- /failed: the latest failures with their last error (the index video_assets_failed).
SELECT id, name, generation AS retry_round, last_error
FROM video_assets
WHERE state = 'failed'
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s;

-- name: set_bot_policy
-- The leading notifier's [telegram] admins and max_retries_per_user_per_day, written when it
-- starts to lead: the button's rules (vidretry_retry_pressed) apply them, for vidretry's own
-- button and asking again as for the SQL interface's vidretry_retry.
UPDATE queue_policy
SET admins = %(admins)s, max_retries_per_user_per_day = %(per_day)s
WHERE id AND (admins, max_retries_per_user_per_day)
             IS DISTINCT FROM (%(admins)s::bigint[], %(per_day)s::integer)
RETURNING id;
