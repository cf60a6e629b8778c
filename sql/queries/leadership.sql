-- Named statements for electing one leader among notifiers
-- (vidretry/telegram/leadership.py). Like jobs.sql: a "now" parameter that is NULL means the
-- database's now().

-- name: claim_leadership
-- Become the leader if nobody is, or the leader's term lapsed (it died, or lost the
-- database). Concurrent candidates queue on the row lock; the first one's commit makes the
-- WHERE false for the others, so exactly one gets a token back.
UPDATE leadership
SET leader = %(candidate)s,
    token = gen_random_uuid(),
    elected_at = coalesce(%(now)s::timestamptz, now()),
    expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(term_seconds)s),
    telegram_connected = false
WHERE role = %(role)s
  AND (leader IS NULL OR expires_at < coalesce(%(now)s::timestamptz, now()))
RETURNING token;

-- name: renew_leadership
-- Extend the leader's term; fenced by its token, so a leader that was replaced gets no row.
UPDATE leadership
SET expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(term_seconds)s)
WHERE role = %(role)s AND token = %(token)s
RETURNING expires_at;

-- name: resign_leadership
-- A leader that stops hands over at once instead of making the others wait for its term.
UPDATE leadership
SET leader = NULL, token = NULL, elected_at = NULL, expires_at = NULL,
    telegram_connected = false
WHERE role = %(role)s AND token = %(token)s
RETURNING role;

-- name: note_telegram_connection
-- The leader's bot session connected or lost its connection (the console's overview shows
-- it). Only the current leader's word counts.
UPDATE leadership
SET telegram_connected = %(connected)s
WHERE role = 'notifier' AND leader = %(leader)s
RETURNING role;

-- name: current_leader
SELECT leader, elected_at, expires_at FROM leadership WHERE role = %(role)s;
