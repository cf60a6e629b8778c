-- Named statements for outbox delivery (vidretry/telegram/outbox.py), used by the
-- notifier. Like jobs.sql: a "now" parameter that is NULL means the database's now().

-- name: claim_notifications
-- Claim up to "limit" due notifications for one notifier, with a lease; several notifiers
-- may run. Each claim counts a delivery attempt (a notifier killed mid-send used one up).
-- The claim commits without waiting for its WAL to reach the disk (see "claimed"): nothing
-- is sent on the strength of a claim alone. mark_notifications_started commits
-- synchronously before every send, and its flush takes the claim's earlier WAL with it; a
-- database crash before that loses the claim and nothing else (the row is pending again,
-- nothing was sent). That spares every message one WAL flush on its way (bench.run's
-- failure → notification: about 1 ms of 3 on a quiet day here).
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
    -- partial index notifications_due serves this scan. Only the kinds this notifier can
    -- send: a kind a later release adds waits for that release's notifier to lead
    -- (docs/upgrading.md).
    SELECT n.id
    FROM notifications AS n
    WHERE n.state = 'pending' AND n.next_attempt_at <= coalesce(%(now)s::timestamptz, now())
      AND n.kind = ANY (%(kinds)s::text[])
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
      -- synchronous_commit off for this transaction alone, set once (an InitPlan) if
      -- anything is claimed; the connection's next transaction waits for the disk again.
      AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
    RETURNING n.id, n.asset_id, n.user_id, n.chat_id, n.kind, n.generation, n.payload,
              n.attempts, n.lease_token
)
SELECT claimed.id, claimed.asset_id, claimed.user_id, claimed.chat_id, claimed.kind,
       claimed.generation AS retry_round, claimed.payload, claimed.attempts, claimed.lease_token,
       u.access_hash, u.lang_code, a.result_size, a.result_sha256,
       a.result_deleted_at IS NOT NULL AS result_deleted
FROM claimed
LEFT JOIN telegram_users AS u ON u.user_id = claimed.user_id
-- A video's size and SHA-256, to check it as it is read back: the asset's, while it is
-- still the result this notification carries.
LEFT JOIN video_assets AS a
       ON claimed.kind = 'ready' AND a.id = claimed.asset_id
      AND a.generation = claimed.generation AND a.result = claimed.payload ->> 'result'
ORDER BY claimed.id;

-- name: due_notifications
-- What claim_notifications would take, read only, for `notifier --transport console`'s
-- preview. No lease: lease_token is NULL.
SELECT n.id, n.asset_id, n.user_id, n.chat_id, n.kind, n.generation AS retry_round, n.payload,
       n.attempts, n.lease_token, u.access_hash, u.lang_code, a.result_size, a.result_sha256,
       a.result_deleted_at IS NOT NULL AS result_deleted
FROM notifications AS n
LEFT JOIN telegram_users AS u ON u.user_id = n.user_id
LEFT JOIN video_assets AS a
       ON n.kind = 'ready' AND a.id = n.asset_id AND a.generation = n.generation
      AND a.result = n.payload ->> 'result'
WHERE n.state = 'pending' AND n.next_attempt_at <= coalesce(%(now)s::timestamptz, now())
  AND n.kind = ANY (%(kinds)s::text[])
ORDER BY n.next_attempt_at, n.id
LIMIT %(limit)s;

-- name: mark_notifications_started
-- The notifier is about to hand these rows to Telegram's library (schema 12): if it dies
-- before an outcome is recorded, the rescue counts a crash on each. Group-committed like
-- the sends; fenced by each row's lease token: a row not in the result is not sent.
UPDATE notifications AS n
SET send_started_at = coalesce(%(now)s::timestamptz, now())
WHERE n.id = ANY (%(ids)b::bigint[]) AND n.state = 'sending'
  AND n.lease_token = ANY (%(tokens)b::uuid[])
RETURNING n.id;

-- name: mark_notifications_sent
-- Delivered, for a batch (the notifier writes its sends as a group commit): each row's
-- Telegram message id and the time. Each row is fenced by its own lease token, as in
-- complete_jobs: a row whose lease was lost is not in the result.
UPDATE notifications AS n
SET state = 'sent',
    -- message_ids[i] belongs to ids[i] (NULL: the transport reports none)
    telegram_message_id = (%(message_ids)b::bigint[])[array_position(%(ids)b::bigint[], n.id)],
    sent_at = coalesce(%(now)s::timestamptz, now()),
    last_error = NULL,
    send_started_at = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE n.id = ANY (%(ids)b::bigint[]) AND n.state = 'sending'
  AND n.lease_token = ANY (%(tokens)b::uuid[])
RETURNING n.id;

-- name: recent_sends
-- A new leader's pacer starts from what the bot sent in the last "seconds" (the rate's
-- window, or a chat's interval if longer), whichever leader sent it: each send's chat and
-- how many seconds ago it was. A sent row counts from when its send was recorded (sent_at,
-- a moment after the message left: the new leader waits a little longer, never less); a
-- row still being sent, from when it was handed to Telegram's library (send_started_at:
-- it may have reached Telegram). Read before the new leader takes those rows back.
SELECT chat_id,
       greatest(extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - at), 0)::float8
           AS seconds_ago
FROM (
    SELECT chat_id, sent_at AS at FROM notifications
    WHERE state = 'sent'
      AND sent_at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s)
    UNION ALL
    SELECT chat_id, send_started_at FROM notifications
    WHERE state = 'sending'
      AND send_started_at > coalesce(%(now)s::timestamptz, now())
                            - make_interval(secs => %(seconds)s)
) AS sends
ORDER BY at;

-- name: reschedule_notification
-- Back to the outbox: a transient error of this row's own ("refund" = 0: the attempt counts,
-- and a row older than the time budget is dead instead), or a flood wait, an outage of
-- Telegram or a shutdown ("refund" = 1: the message was not refused, the try is not
-- charged, and no budget applies). A failure message whose asset was retried meanwhile is
-- superseded instead: it is no longer true. Fenced by the lease token.
UPDATE notifications AS n
SET state = CASE
        WHEN n.kind = 'failed' AND n.generation < (SELECT a.generation FROM video_assets AS a
                                                   WHERE a.id = n.asset_id) THEN 'superseded'
        WHEN %(refund)s = 0 AND n.created_at < coalesce(%(now)s::timestamptz, now())
                                               - make_interval(secs => %(give_up_after_seconds)s)
            THEN 'dead'
        ELSE 'pending' END,
    attempts = n.attempts - %(refund)s,
    -- A send that came back with an answer ends a run of crashes, one that never began
    -- (its chat was busy, Telegram went down meanwhile, a shutdown) leaves it as it was.
    crashes = CASE WHEN n.send_started_at IS NULL THEN n.crashes ELSE 0 END,
    send_started_at = NULL,
    next_attempt_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(delay_seconds)s),
    last_error = CASE
        WHEN %(refund)s = 0 AND n.created_at < coalesce(%(now)s::timestamptz, now())
                                               - make_interval(secs => %(give_up_after_seconds)s)
            THEN 'gave up after ' || %(give_up_after_seconds)s::text || 's: ' || %(error)s::text
        ELSE coalesce(%(error)s::text, n.last_error) END,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE n.id = %(id)s AND n.state = 'sending' AND n.lease_token = %(token)s
RETURNING n.state;

-- name: bury_notification
-- Give up on one notification, with the reason: the recipient or the message was refused
-- for good. Fenced by the lease token.
UPDATE notifications
SET state = 'dead',
    last_error = %(error)s,
    send_started_at = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND state = 'sending' AND lease_token = %(token)s
RETURNING id;

-- name: extend_notification_leases
-- Heartbeat for every notification a notifier is sending (a video upload can outlast a
-- lease), in one statement. A row missing from the result lost its lease: the notifier
-- stops sending it and records nothing. Fenced as extend_leases in jobs.sql is.
UPDATE notifications
SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(lease_seconds)s)
WHERE id = ANY (%(ids)b::bigint[]) AND state = 'sending' AND lease_token = ANY (%(tokens)b::uuid[])
RETURNING id;

-- name: rescue_notifications_and_queue_set_aside_notices
-- Rows of a notifier that died mid-send come back, due at once: it may have sent them
-- already (delivery is at-least-once), and the lost try counts. A new leader ("leader" set)
-- also takes back every row another notifier still holds: a notifier sends only while it
-- leads, so those belong to a leader whose term is over. A row whose send had begun
-- (send_started_at) counts a crash; one at "max_crashes" crashes in a row is dead, and the
-- admins are told once each ('set_aside'; not for a set_aside notice itself, or notices
-- could breed). Rows older than the time budget are dead; failure messages made obsolete
-- by a retry are superseded.
WITH rescued AS (
    UPDATE notifications AS n
    SET state = CASE
            WHEN n.kind = 'failed' AND n.generation < (SELECT a.generation FROM video_assets AS a
                                                       WHERE a.id = n.asset_id) THEN 'superseded'
            WHEN n.send_started_at IS NOT NULL AND n.crashes + 1 >= %(max_crashes)s THEN 'dead'
            WHEN n.created_at < coalesce(%(now)s::timestamptz, now())
                                - make_interval(secs => %(give_up_after_seconds)s) THEN 'dead'
            ELSE 'pending' END,
        crashes = n.crashes + (n.send_started_at IS NOT NULL)::int,
        last_error = CASE
            WHEN n.send_started_at IS NOT NULL AND n.crashes + 1 >= %(max_crashes)s
                THEN 'crashed the notifier ' || (n.crashes + 1)::text
                     || ' times while sending it: set aside (last: lease of ' || n.lease_owner
                     || ' ended mid-send)'
            WHEN n.send_started_at IS NOT NULL
                THEN 'lease of ' || n.lease_owner || ' ended mid-send (notifier lost)'
            ELSE 'lease of ' || n.lease_owner || ' ended (notifier lost)' END,
        send_started_at = NULL,
        next_attempt_at = coalesce(%(now)s::timestamptz, now()),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE n.id IN (
        SELECT id FROM notifications
        WHERE state = 'sending'
          AND (lease_expires_at < coalesce(%(now)s::timestamptz, now())
               OR lease_owner <> %(leader)s::text)
        LIMIT %(limit)s  -- in batches: the caller repeats until one comes back short
        FOR UPDATE SKIP LOCKED
    )
    RETURNING n.id, n.state, n.kind, n.crashes, n.user_id, n.asset_id, n.payload
),
told AS (
    INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                               next_attempt_at, created_at, updated_at)
    SELECT NULL, admin, admin, 'set_aside', r.id,
           jsonb_build_object('notification', r.id, 'kind', r.kind, 'user', r.user_id,
                              'asset', r.asset_id, 'name', coalesce(r.payload ->> 'name', ''),
                              'crashes', r.crashes),
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
           coalesce(%(now)s::timestamptz, now())
    FROM rescued AS r CROSS JOIN unnest(%(admins)s::bigint[]) AS admin
    WHERE r.state = 'dead' AND r.crashes >= %(max_crashes)s AND r.kind <> 'set_aside'
    ON CONFLICT (user_id, kind, generation) WHERE asset_id IS NULL DO NOTHING
)
SELECT id, state, state = 'dead' AND crashes >= %(max_crashes)s AS set_aside FROM rescued;

-- name: remember_user
-- A user wrote to the bot or pressed a button: keep how to address them and their language
-- (schema 13; an update without one keeps the last), and clear any blocked mark (they talk
-- to us again).
INSERT INTO telegram_users (user_id, access_hash, lang_code, first_seen_at, last_seen_at)
VALUES (%(user_id)s, %(access_hash)s, %(lang_code)s, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (user_id) DO UPDATE
SET access_hash = coalesce(excluded.access_hash, telegram_users.access_hash),
    lang_code = coalesce(excluded.lang_code, telegram_users.lang_code),
    last_seen_at = excluded.last_seen_at,
    blocked_at = NULL,
    blocked_reason = NULL
RETURNING lang_code;  -- the language to answer in: this update's, else the last known

-- name: mark_user_blocked
-- Telegram refused a recipient for good (blocked the bot, deactivated, never started it).
INSERT INTO telegram_users (user_id, first_seen_at, blocked_at, blocked_reason)
VALUES (%(user_id)s, coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
        %(reason)s)
ON CONFLICT (user_id) DO UPDATE
SET blocked_at = excluded.blocked_at, blocked_reason = excluded.blocked_reason;

-- name: user_language
-- The language a user's Telegram last reported (schema 13), for an answer to an update that
-- carried none.
SELECT lang_code FROM telegram_users WHERE user_id = %(user_id)s;

-- name: asset_for_button
-- What the button handler needs to answer: the asset's name and, once available, its video
-- with its size and SHA-256 (and its retry round: the key of the video's stored Telegram
-- reference).
SELECT name, state, result, generation AS retry_round, result_size, result_sha256,
       result_deleted_at IS NOT NULL AS result_deleted
FROM video_assets WHERE id = %(id)s;
