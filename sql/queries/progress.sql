-- Named statements for the acceptance messages the notifier keeps current
-- (vidretry/telegram/progress.py). Like jobs.sql: a "now" parameter that is NULL means the
-- database's now().

-- name: remember_acceptance
-- The bot sent the message that accepted a request: remember it, and what it says, so the
-- notifier can edit it. Only while the request still waits.
UPDATE user_requests
SET accept_message_id = %(message_id)s,
    shown = %(text)s,
    checked_at = coalesce(%(now)s::timestamptz, now()),
    edited_at = coalesce(%(now)s::timestamptz, now())
WHERE asset_id = %(asset_id)s AND user_id = %(user_id)s AND state = 'pending'
RETURNING id;

-- name: progress_to_show
-- Waiting requests with an acceptance message that was not looked at for "seconds", in
-- chats not edited for as long, least recently looked at first (the index
-- user_requests_shown); with what the message should say now: the asset's state and
-- progress, and the user's language.
SELECT r.id, r.asset_id, r.user_id, r.chat_id, r.accept_message_id, r.shown,
       a.name, a.state, a.generation AS retry_round, a.progress, u.access_hash, u.lang_code
FROM user_requests AS r
JOIN video_assets AS a ON a.id = r.asset_id
LEFT JOIN telegram_users AS u ON u.user_id = r.user_id
WHERE r.state = 'pending' AND r.accept_message_id IS NOT NULL
  AND (r.checked_at IS NULL
       OR r.checked_at <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s))
  AND a.state IN ('pending', 'running')
  AND u.blocked_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM user_requests AS o
      WHERE o.user_id = r.user_id
        AND o.edited_at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s))
ORDER BY r.checked_at NULLS FIRST, r.id
LIMIT %(limit)s;

-- name: progress_shown
-- The acceptance messages edited in one pass: texts[i] is what request ids[i] shows now.
UPDATE user_requests AS r
SET shown = (%(texts)b::text[])[array_position(%(ids)b::bigint[], r.id)],
    checked_at = coalesce(%(now)s::timestamptz, now()),
    edited_at = coalesce(%(now)s::timestamptz, now())
WHERE r.id = ANY (%(ids)b::bigint[]) AND r.state = 'pending'
RETURNING r.id;

-- name: progress_checked
-- Acceptance messages found current (or skipped: the rate was busy): looked at again later.
UPDATE user_requests
SET checked_at = coalesce(%(now)s::timestamptz, now())
WHERE id = ANY (%(ids)b::bigint[]) AND state = 'pending'
RETURNING id;

-- name: forget_acceptances
-- Acceptance messages that are gone (the user deleted them): never edited again.
UPDATE user_requests
SET accept_message_id = NULL
WHERE id = ANY (%(ids)b::bigint[]) AND state = 'pending'
RETURNING id;
