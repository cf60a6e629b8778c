-- Named statements for the bot's conversations (vidretry/conversation.py, vidretry/limits.py).
-- Like jobs.sql: a "now" parameter that is NULL means the database's now().

-- name: user_open_requests
-- How many of a user's requests still wait (their asset pending or running), and whether
-- they asked for this name before (asking again is not a new request). Read only to word
-- an answer; the limit is a courtesy to the generator, not an invariant.
SELECT count(*) FILTER (WHERE r.state = 'pending') AS open,
       coalesce(bool_or(a.name = %(name)s), false) AS asked_before
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s;

-- name: asset_by_name
SELECT id, state, generation FROM video_assets WHERE name = %(name)s;

-- name: user_requests_newest
-- /my: a user's requests, newest first (the index user_requests_by_user serves it).
SELECT a.id, a.name, a.state, a.generation, r.state AS request_state
FROM user_requests AS r JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s
ORDER BY r.id DESC
LIMIT %(limit)s;

-- name: latest_failed
-- /failed: the latest failures with their last error (the index video_assets_failed).
SELECT id, name, generation, last_error
FROM video_assets
WHERE state = 'failed'
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s;

-- name: retries_in_the_last_day
-- How often one actor retried in the last 24 hours (the index job_events_retries_by_actor).
SELECT count(*) AS n
FROM job_events
WHERE kind = 'retried' AND actor = %(actor)s
  AND created_at > coalesce(%(now)s::timestamptz, now()) - interval '1 day';

-- name: queue_admin_alerts
-- A user used up their retries on a failed asset: one message to each admin, naming the
-- asset, the user and the last error. The outbox's unique key makes it one per admin and
-- failure, however often the limit is hit.
WITH asset AS (
    SELECT id, name, generation, last_error FROM video_assets WHERE id = %(asset_id)s
),
queued AS (
    INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                               next_attempt_at, created_at, updated_at)
    SELECT asset.id, admin, admin, 'alert', asset.generation,
           jsonb_build_object('name', asset.name, 'user', %(user_id)s::bigint,
                              'error', coalesce(asset.last_error, '')),
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
           coalesce(%(now)s::timestamptz, now())
    FROM asset CROSS JOIN unnest(%(admins)s::bigint[]) AS admin
    ON CONFLICT (asset_id, user_id, kind, generation) DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued,
       CASE WHEN count(*) > 0 THEN pg_notify('vidretry_outbox', %(asset_id)s::text) END AS notified
FROM queued;

-- name: set_bot_policy
-- The leading notifier's [telegram] admins and max_retries_per_user_per_day, written when it
-- starts to lead: the SQL interface's vidretry_retry applies the button's rules with them.
UPDATE queue_policy
SET admins = %(admins)s, max_retries_per_user_per_day = %(per_day)s
WHERE id AND (admins, max_retries_per_user_per_day)
             IS DISTINCT FROM (%(admins)s::bigint[], %(per_day)s::integer)
RETURNING id;
