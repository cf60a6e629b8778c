-- Named statements for the web console (vidretry/web/). The console's pool sends them
-- unprepared, so each is planned with its parameters' values: an optional filter that is
-- NULL folds away, and a state filter can use that state's partial index.

-- name: add_web_token
-- A new token: only its SHA-256 hash is kept. A name already taken is a unique violation.
INSERT INTO web_tokens (name, role, token_hash) VALUES (%(name)s, %(role)s, %(hash)s)
RETURNING name;

-- name: web_tokens
SELECT name, role, created_at, last_used_at FROM web_tokens ORDER BY name;

-- name: revoke_web_token
-- A revoked token is gone: the next request with it, or with a session made from it, is
-- refused by every web process.
DELETE FROM web_tokens WHERE name = %(name)s RETURNING name;

-- name: web_token_by_hash
-- Who a token (or a session made from it) is: one index lookup per request, no write.
SELECT name, role FROM web_tokens WHERE token_hash = %(hash)s;

-- name: note_web_token_used
-- At a login, and at most once a minute for API calls: when a token was last used.
UPDATE web_tokens
SET last_used_at = now()
WHERE token_hash = %(hash)s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
RETURNING name;

-- name: search_assets
-- Newest first, a page after "before" (keyset: no OFFSET), optionally in one state, with a
-- name that starts with "prefix" (a LIKE pattern, its wildcards escaped; the index
-- video_assets_name_prefix).
SELECT a.id, a.name, a.state, a.priority, a.attempts, a.max_attempts,
       a.generation AS retry_round, a.last_error, a.updated_at
FROM video_assets AS a
WHERE (%(state)s::text IS NULL OR a.state = %(state)s::text)
  AND (%(before)s::bigint IS NULL OR a.id < %(before)s::bigint)
  AND (%(prefix)s::text IS NULL OR a.name LIKE %(prefix)s::text)
ORDER BY a.id DESC
LIMIT %(limit)s;

-- name: assets_of_user
-- The same page for the assets one Telegram user asked for, read from their requests (the
-- index user_requests_by_user): a user's few assets are never looked for among a million.
SELECT a.id, a.name, a.state, a.priority, a.attempts, a.max_attempts,
       a.generation AS retry_round, a.last_error, a.updated_at
FROM user_requests AS r
JOIN video_assets AS a ON a.id = r.asset_id
WHERE r.user_id = %(user_id)s
  AND (%(state)s::text IS NULL OR a.state = %(state)s::text)
  AND (%(before)s::bigint IS NULL OR a.id < %(before)s::bigint)
ORDER BY a.id DESC
LIMIT %(limit)s;

-- name: count_failed
-- How many failed assets a bulk retry would take (the index video_assets_failed), with an
-- optional name prefix.
SELECT count(*) AS n FROM video_assets
WHERE state = 'failed' AND (%(prefix)s::text IS NULL OR name LIKE %(prefix)s::text);

-- name: failed_ids
-- The failed assets a bulk retry takes, oldest first.
SELECT id FROM video_assets
WHERE state = 'failed' AND (%(prefix)s::text IS NULL OR name LIKE %(prefix)s::text)
ORDER BY id;

-- name: outcomes_per_minute
-- Done and failed per minute over the last hour, for the overview's chart: the history's
-- BRIN index on time reads only the last hour's pages.
SELECT date_trunc('minute', created_at) AS minute,
       count(*) FILTER (WHERE kind = 'succeeded') AS done,
       count(*) FILTER (WHERE kind = 'failed') AS failed
FROM job_events
WHERE kind IN ('succeeded', 'failed') AND created_at > now() - interval '1 hour'
GROUP BY 1
ORDER BY 1;

-- name: console_facts
-- The rest of the overview: who leads the notifiers (until when, and whether its bot is
-- connected to Telegram), the last prune.
SELECT (SELECT leader FROM leadership WHERE role = 'notifier') AS leader,
       (SELECT expires_at FROM leadership WHERE role = 'notifier') AS leader_until,
       (SELECT telegram_connected FROM leadership WHERE role = 'notifier') AS telegram,
       (SELECT pruned_at FROM last_prune) AS pruned_at,
       (SELECT pruned_by FROM last_prune) AS pruned_by,
       now() AS now;

-- name: outbox_rows
-- Waiting (pending, sending) or dead notifications, newest first, a page after "before":
-- each state from its partial index.
SELECT n.id, n.asset_id, n.user_id, n.kind, n.generation AS retry_round, n.state, n.attempts,
       n.next_attempt_at, n.last_error, n.created_at, a.name
FROM notifications AS n
LEFT JOIN video_assets AS a ON a.id = n.asset_id
WHERE n.state = ANY (%(states)s::text[])
  AND (%(before)s::bigint IS NULL OR n.id < %(before)s::bigint)
ORDER BY n.id DESC
LIMIT %(limit)s;

-- name: resend_notification
-- Send a dead notification again, from the console: pending now, with a fresh budget. Its
-- asset's history records who (an admins' notice belongs to no asset: no history row).
WITH resent AS (
    UPDATE notifications
    SET state = 'pending', attempts = 0, crashes = 0, send_started_at = NULL,
        next_attempt_at = now(), created_at = now(), updated_at = now()
    WHERE id = %(id)s AND state = 'dead'
    RETURNING id, asset_id, generation, user_id, last_error
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, actor, detail)
    SELECT asset_id, generation, 'resent', %(actor)s,
           'notification ' || id || ' to ' || user_id || ' (was: ' || last_error || ')'
    FROM resent WHERE asset_id IS NOT NULL
)
SELECT id, pg_notify('vidretry_outbox', id::text) AS notified FROM resent;

-- name: web_session_key
-- The shared key for session cookies: made once (by whichever web process is first).
WITH made AS (
    INSERT INTO web_secret (session_key) VALUES (%(key)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING session_key
)
SELECT session_key FROM made
UNION ALL
SELECT session_key FROM web_secret
LIMIT 1;
