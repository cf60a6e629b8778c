-- Named statements for outbox delivery (vidretry/outbox.py), used by the notifier.
-- Like jobs.sql: a "now" parameter that is NULL means the database's now().

-- name: claim_notifications
-- Claim up to "limit" due notifications for one notifier, with a lease; several notifiers
-- may run. Each claim counts a delivery attempt (a notifier killed mid-send used one up).
WITH skipped AS (
    -- Recipients marked blocked are not attempted until they write to the bot again.
    UPDATE notifications AS n
    SET state = 'dead',
        last_error = 'not attempted: ' || u.blocked_reason,
        updated_at = coalesce(%(now)s::timestamptz, now())
    FROM telegram_users AS u
    WHERE n.state = 'pending' AND n.next_attempt_at <= coalesce(%(now)s::timestamptz, now())
      AND u.user_id = n.user_id AND u.blocked_at IS NOT NULL
),
due AS (
    -- Oldest due first; SKIP LOCKED keeps concurrent notifiers on disjoint rows. The
    -- partial index notifications_due serves this scan.
    SELECT n.id
    FROM notifications AS n
    WHERE n.state = 'pending' AND n.next_attempt_at <= coalesce(%(now)s::timestamptz, now())
      AND NOT EXISTS (SELECT 1 FROM telegram_users AS u
                      WHERE u.user_id = n.user_id AND u.blocked_at IS NOT NULL)
    ORDER BY n.next_attempt_at, n.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE notifications AS n
    SET state = 'sending',
        attempts = n.attempts + 1,
        lease_owner = %(owner)s,
        lease_token = gen_random_uuid(),
        lease_expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(lease_seconds)s),
        updated_at = coalesce(%(now)s::timestamptz, now())
    FROM due
    WHERE n.id = due.id
    RETURNING n.id, n.asset_id, n.user_id, n.chat_id, n.kind, n.generation, n.payload,
              n.attempts, n.lease_token
)
SELECT claimed.*, u.access_hash
FROM claimed LEFT JOIN telegram_users AS u ON u.user_id = claimed.user_id
ORDER BY claimed.id;

-- name: mark_notification_sent
-- Delivered: record Telegram's message id and the time. Fenced by the lease token.
UPDATE notifications
SET state = 'sent',
    telegram_message_id = %(message_id)s,
    sent_at = coalesce(%(now)s::timestamptz, now()),
    last_error = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND state = 'sending' AND lease_token = %(token)s
RETURNING id;

-- name: reschedule_notification
-- Try again after a delay: a transient error (the attempt counts) or a flood wait or a
-- shutdown ("refund" = 1: Telegram asked us to wait, the message was not refused).
UPDATE notifications
SET state = 'pending',
    attempts = attempts - %(refund)s,
    next_attempt_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(delay_seconds)s),
    last_error = coalesce(%(error)s::text, last_error),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND state = 'sending' AND lease_token = %(token)s
RETURNING id;

-- name: bury_notification
-- Give up on one notification, with the reason: a permanent error, or attempts used up.
UPDATE notifications
SET state = 'dead',
    last_error = %(error)s,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND state = 'sending' AND lease_token = %(token)s
RETURNING id;

-- name: rescue_expired_notifications
-- Rows of a notifier that died mid-send come back. It may have sent them already: delivery
-- is at-least-once. Rows that used up their attempts are dead instead.
UPDATE notifications
SET state = CASE WHEN attempts >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    last_error = 'lease of ' || lease_owner || ' expired (notifier lost)',
    next_attempt_at = coalesce(%(now)s::timestamptz, now()),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id IN (
    SELECT id FROM notifications
    WHERE state = 'sending' AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
    FOR UPDATE SKIP LOCKED
)
RETURNING id, state;

-- name: remember_user
-- A user wrote to the bot or pressed a button: keep how to address them, and clear any
-- blocked mark (they talk to us again).
INSERT INTO telegram_users (user_id, access_hash, first_seen_at, last_seen_at)
VALUES (%(user_id)s, %(access_hash)s, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (user_id) DO UPDATE
SET access_hash = coalesce(excluded.access_hash, telegram_users.access_hash),
    last_seen_at = excluded.last_seen_at,
    blocked_at = NULL,
    blocked_reason = NULL;

-- name: mark_user_blocked
-- Telegram refused a recipient for good (blocked the bot, deactivated, never started it).
INSERT INTO telegram_users (user_id, first_seen_at, blocked_at, blocked_reason)
VALUES (%(user_id)s, coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
        %(reason)s)
ON CONFLICT (user_id) DO UPDATE
SET blocked_at = excluded.blocked_at, blocked_reason = excluded.blocked_reason;

-- name: asset_for_button
-- What the button handler needs to answer: the asset's name and, once available, its video.
SELECT name, state, result FROM video_assets WHERE id = %(id)s;
