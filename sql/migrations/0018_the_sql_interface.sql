-- vidretry schema, version 18: asking for videos, retrying and cancelling from SQL, in the
-- caller's transaction — the interface any program can call (docs/integrate.md).
--
-- The rules live here once. vidretry's own enqueue, retry service and cancel button call the
-- same functions (vidretry/queue/enqueue.py, retry.py, cancel.py), so the command line, the
-- bot, the console and a TypeScript bot calling vidretry_enqueue() follow one rule for names,
-- ids, joining an asset, who may retry and the retry quota. Every change of state inside
-- them is one guarded UPDATE, as everywhere (tests/unit/test_sql.py reads these bodies too).
--
-- The public functions (vidretry_enqueue, vidretry_retry, vidretry_cancel, vidretry_asset,
-- vidretry_track_message, vidretry_interface_version) are a stable interface, version 1: their names, arguments,
-- results and SQLSTATEs change only with a new interface version. They run with the rights
-- of their owner (SECURITY DEFINER, with this schema's search_path), so another program's
-- role needs EXECUTE on them and nothing on the tables; EXECUTE is not granted to PUBLIC.
--
-- Errors, raised with these SQLSTATEs and a one-line message:
--   VR001  the name breaks the name rule      VR010  no such asset
--   VR002  a bad Telegram user, chat or       VR011  not allowed: the user has no request
--          asset id                                  on the asset (and is no admin)
--   VR003  a priority outside 0-9             VR012  not failed: nothing to retry
--   VR004  params that are not a JSON object  VR013  nothing left to cancel
--                                             VR014  the user's retries for today are used up

-- The settings these rules need from vidretry's configuration, written by the processes that
-- have it: the workers their [worker] max_attempts, the notifiers their [telegram] admins and
-- max_retries_per_user_per_day (at start, like [queue] fair).
ALTER TABLE queue_policy
    ADD COLUMN max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN admins bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN max_retries_per_user_per_day integer NOT NULL DEFAULT 3
        CHECK (max_retries_per_user_per_day >= 0);

-- The console's HTTP API for services: a token of the role 'service' asks for videos, and
-- retries and cancels on behalf of Telegram users with the button's rules (docs/web.md).
ALTER TABLE web_tokens DROP CONSTRAINT web_tokens_role_check;
ALTER TABLE web_tokens ADD CONSTRAINT web_tokens_role_check
    CHECK (role IN ('viewer', 'operator', 'service'));

-- The one rule for a video's name (vidretry.queue.enqueue.normalise_name says the same, so
-- the command line refuses a bad name before it asks the database; a test holds the two to
-- one answer): whitespace at either end goes — every character Python's str.strip() takes —
-- and what is left is 1 to 2,000 bytes of UTF-8 with no control character.
CREATE FUNCTION vidretry_normalise_name(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    blank CONSTANT text := '[\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a'
                           '\u2028\u2029\u202f\u205f\u3000]';
    trimmed text := regexp_replace(vidretry_normalise_name.name,
                                   '^' || blank || '+|' || blank || '+$', '', 'g');
BEGIN
    IF trimmed IS NULL OR octet_length(trimmed) NOT BETWEEN 1 AND 2000
       OR trimmed ~ '[\u0001-\u001f\u007f-\u009f]' THEN
        RAISE EXCEPTION USING ERRCODE = 'VR001', MESSAGE = format(
            'asset name must be 1 to 2000 bytes of UTF-8, not only spaces, no control '
            'characters, got %s bytes', coalesce(octet_length(trimmed), 0));
    END IF;
    RETURN trimmed;
END;
$$;

-- Telegram's ids: a user id is positive, a chat id is not 0 (groups are negative), both
-- within 53 bits; an asset id is a positive bigint.
CREATE FUNCTION vidretry_check_ids(user_id bigint, chat_id bigint, asset_id bigint)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF user_id IS NOT NULL AND user_id NOT BETWEEN 1 AND 9007199254740991 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002', MESSAGE = format(
            'user id must be a positive Telegram user id (1 to 9007199254740991), got %s',
            user_id);
    END IF;
    IF chat_id IS NOT NULL AND (chat_id = 0 OR abs(chat_id) > 9007199254740991) THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002', MESSAGE = format(
            'chat id must be a Telegram chat id (not 0, at most 53 bits), got %s', chat_id);
    END IF;
    IF asset_id IS NOT NULL AND asset_id < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = format('asset id must be a positive integer, got %s', asset_id);
    END IF;
END;
$$;

-- Put a failed asset back in the queue, exactly once: vidretry's one retry service
-- (vidretry.queue.retry). Every condition that makes a retry legal is in the UPDATE's WHERE,
-- so of N concurrent callers exactly one changes it: the asset is failed; the button's
-- generation (if any) is still the current one; "request_of" (if any) has a request on it.
-- Then, each in a statement of its own (so each sees what a transaction that held the row
-- lock before it committed), the users told of the failure wait again and the failure
-- messages not sent yet are superseded. The workers are woken at commit. When nothing
-- changed, the asset is read only to say why.
CREATE FUNCTION vidretry_retry_asset(
    asset_id bigint, actor text, button_generation integer, request_of bigint, reason text,
    at_time timestamptz,
    OUT outcome text, OUT state text, OUT generation integer,
    OUT reopened_users bigint[], OUT superseded integer
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ timestamptz := coalesce(at_time, now());
    has_request boolean;
BEGIN
    reopened_users := '{}';
    superseded := 0;
    UPDATE video_assets AS a
    SET state = 'pending', attempts = 0, run_at = now_, generation = a.generation + 1,
        finished_at = NULL, updated_at = now_
    WHERE a.id = vidretry_retry_asset.asset_id AND a.state = 'failed'
      AND (button_generation IS NULL OR a.generation = button_generation)
      AND (request_of IS NULL OR EXISTS (
              SELECT 1 FROM user_requests AS r
              WHERE r.asset_id = a.id AND r.user_id = request_of))
    RETURNING a.generation INTO vidretry_retry_asset.generation;
    IF NOT FOUND THEN
        SELECT a.state, a.generation,
               EXISTS (SELECT 1 FROM user_requests AS r
                       WHERE r.asset_id = a.id AND r.user_id = request_of)
        INTO vidretry_retry_asset.state, vidretry_retry_asset.generation, has_request
        FROM video_assets AS a WHERE a.id = vidretry_retry_asset.asset_id;
        IF NOT FOUND THEN
            outcome := 'not_found';
        ELSIF request_of IS NOT NULL AND NOT has_request THEN
            -- Say nothing about the asset to someone who may not touch it.
            outcome := 'forbidden';
            vidretry_retry_asset.state := NULL;
            vidretry_retry_asset.generation := NULL;
        ELSIF button_generation IS NOT NULL
              AND button_generation <> vidretry_retry_asset.generation THEN
            outcome := 'stale';
        ELSE
            outcome := 'not_failed';
        END IF;
        RETURN;
    END IF;
    INSERT INTO job_events (asset_id, generation, kind, actor, detail, created_at)
    VALUES (vidretry_retry_asset.asset_id, vidretry_retry_asset.generation, 'retried',
            vidretry_retry_asset.actor, vidretry_retry_asset.reason, now_);
    PERFORM pg_notify('vidretry_jobs', vidretry_retry_asset.asset_id::text);
    WITH reopened AS (
        UPDATE user_requests AS r
        SET state = 'pending', updated_at = now_
        WHERE r.asset_id = vidretry_retry_asset.asset_id AND r.state = 'failed'
        RETURNING r.user_id
    )
    SELECT coalesce(array_agg(reopened.user_id ORDER BY reopened.user_id), '{}')
    INTO reopened_users FROM reopened;
    -- A message being sent right now is left alone: it may still arrive, and if it comes back
    -- unsent the notifier supersedes it then (reschedule_notification).
    WITH obsolete AS (
        UPDATE notifications AS n
        SET state = 'superseded', last_error = 'superseded by a retry', updated_at = now_
        WHERE n.asset_id = vidretry_retry_asset.asset_id AND n.kind = 'failed'
          AND n.state = 'pending'
        RETURNING n.id
    )
    SELECT count(*) INTO superseded FROM obsolete;
    outcome := 'retried';
    vidretry_retry_asset.state := 'pending';
END;
$$;

-- Cancel a job still to be made or being made (the named statement cancel_job calls it): a
-- pending one is never claimed; a running one loses its lease (its worker's heartbeat
-- notices and stops the generator) and the attempt it was charged at the claim is given
-- back. With "unwanted" (a user's withdrawal) only when nobody waits for it any more;
-- without, an operator's cancel of the whole asset, whoever waits. The asset row is locked
-- first either way (the lock order everywhere: asset, requests, outbox).
CREATE FUNCTION vidretry_cancel_job(
    asset_id bigint, actor text, reason text, unwanted boolean, at_time timestamptz
) RETURNS TABLE (id bigint, was text)
LANGUAGE sql AS $$
WITH old AS (
    SELECT id, state, lease_owner FROM video_assets WHERE id = asset_id FOR UPDATE
),
cancelled AS (
    UPDATE video_assets AS a
    SET state = 'cancelled',
        attempts = CASE WHEN a.state = 'running' THEN a.attempts - 1 ELSE a.attempts END,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, progress = NULL,
        finished_at = coalesce(at_time, now()),
        updated_at = coalesce(at_time, now())
    FROM old
    WHERE a.id = old.id AND a.state IN ('pending', 'running')
      AND (NOT unwanted OR NOT EXISTS (SELECT 1 FROM user_requests AS r
                                       WHERE r.asset_id = a.id AND r.state = 'pending'))
    RETURNING a.id, a.generation, old.state AS was, old.lease_owner
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, actor, detail, created_at)
    SELECT cancelled.id, generation, 'cancelled', actor,
           nullif(concat_ws('; ',
                            coalesce(reason, CASE WHEN unwanted THEN 'nobody waits any more' END),
                            CASE WHEN was = 'running' THEN 'stopped on ' || lease_owner END), ''),
           coalesce(at_time, now())
    FROM cancelled
)
SELECT cancelled.id, cancelled.was FROM cancelled;
$$;

-- One user takes back their request (the cancel button, vidretry.queue.cancel.withdraw): a
-- waiting one, or one whose video or failure message has not gone out yet (that message is
-- never sent). A button names the generation it was made for: one from before a retry or a
-- re-opening changes nothing. When nobody waits any more, the job is cancelled too. The
-- asset row is locked first; each step is a statement of its own, in that lock's order.
CREATE FUNCTION vidretry_withdraw_request(
    asset_id bigint, user_id bigint, button_generation integer, at_time timestamptz,
    OUT outcome text, OUT state text, OUT was_running boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ timestamptz := coalesce(at_time, now());
    who CONSTANT text := 'telegram:' || vidretry_withdraw_request.user_id;
    current_generation integer;
    request_state text;
    job record;
BEGIN
    was_running := false;
    SELECT a.state, a.generation INTO vidretry_withdraw_request.state, current_generation
    FROM video_assets AS a WHERE a.id = vidretry_withdraw_request.asset_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;
    UPDATE user_requests AS r
    SET state = 'cancelled', updated_at = now_
    WHERE r.asset_id = vidretry_withdraw_request.asset_id
      AND r.user_id = vidretry_withdraw_request.user_id
      AND (button_generation IS NULL OR current_generation = button_generation)
      AND (r.state = 'pending'
           OR (r.state IN ('done', 'failed') AND EXISTS (
                   SELECT 1 FROM notifications AS n
                   WHERE n.asset_id = r.asset_id AND n.user_id = r.user_id
                     AND n.kind IN ('ready', 'failed') AND n.state = 'pending')));
    IF NOT FOUND THEN
        SELECT r.state INTO request_state FROM user_requests AS r
        WHERE r.asset_id = vidretry_withdraw_request.asset_id
          AND r.user_id = vidretry_withdraw_request.user_id;
        IF request_state IS NULL THEN
            -- Say nothing about the asset to someone who never asked for it.
            outcome := 'forbidden';
            vidretry_withdraw_request.state := NULL;
        ELSE
            outcome := 'not_open';
        END IF;
        RETURN;
    END IF;
    INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
    VALUES (vidretry_withdraw_request.asset_id, current_generation, 'withdrawn',
            who, now_);
    -- The user's video or failure message that has not gone out is never sent. One being
    -- sent right now is left alone (as after a retry).
    UPDATE notifications AS n
    SET state = 'superseded', last_error = 'the request was cancelled', updated_at = now_
    WHERE n.asset_id = vidretry_withdraw_request.asset_id
      AND n.user_id = vidretry_withdraw_request.user_id
      AND n.kind IN ('ready', 'failed') AND n.state = 'pending';
    SELECT * INTO job FROM vidretry_cancel_job(
        vidretry_withdraw_request.asset_id, who, NULL, true, at_time);
    IF job.id IS NULL THEN
        outcome := 'withdrawn';
    ELSE
        outcome := 'cancelled';
        was_running := job.was = 'running';
    END IF;
END;
$$;

-- Ask for a video (vidretry.queue.enqueue.enqueue, the bot's /video, the console, and
-- vidretry_enqueue below): create the asset for a name or join the one that has it; "user_id"
-- waits for it (none: nobody is told, the job is its own owner). A new job gets its turn in
-- the fair order (schema 17) and wakes the workers at commit. An asset already available
-- answers the user at once (a 'ready' outbox row); a failed one is retried with this user as
-- the actor; a cancelled one is re-opened as a new generation. A request of a higher
-- priority lifts a job that waits. The insert or the no-op update of the name's row locks
-- it first, so a worker finishing the job concurrently either commits before us (we see its
-- final state) or waits for our request.
CREATE FUNCTION vidretry_enqueue_request(
    name text, user_id bigint, chat_id bigint, params jsonb, priority integer,
    max_attempts integer, actor text, at_time timestamptz,
    OUT asset_id bigint, OUT state text, OUT created boolean, OUT retried boolean,
    OUT ready_queued boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ timestamptz := coalesce(at_time, now());
    me CONSTANT bigint := vidretry_enqueue_request.user_id;  -- the requester: the owner if new
    rank CONSTANT integer := vidretry_enqueue_request.priority;
    who CONSTANT text := coalesce(vidretry_enqueue_request.actor, 'telegram:' || me,
                                  'sql:' || session_user);
    chat CONSTANT bigint := coalesce(vidretry_enqueue_request.chat_id, me);
    clean text;
    generation_ integer;
    again record;
BEGIN
    clean := vidretry_normalise_name(vidretry_enqueue_request.name);
    PERFORM vidretry_check_ids(me, vidretry_enqueue_request.chat_id, NULL);
    IF me IS NULL AND vidretry_enqueue_request.chat_id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = 'a chat id needs the user id of the requester';
    END IF;
    IF rank IS NULL OR rank NOT BETWEEN 0 AND 9 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR003', MESSAGE = format(
            'priority must be an integer from 0 to 9 (higher first), got %s',
            coalesce(rank::text, 'null'));
    END IF;
    IF vidretry_enqueue_request.params IS NULL
       OR jsonb_typeof(vidretry_enqueue_request.params) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'VR004', MESSAGE = format(
            'params must be a JSON object, got %s',
            coalesce(jsonb_typeof(vidretry_enqueue_request.params), 'null'));
    END IF;
    -- A new job's turn: the current round at its priority (the newest turn started — claims
    -- go in turn order — or, with nothing running, the oldest waiting; a retried job's old
    -- turn and a backoff do not hold it back) plus the owner's jobs already in this round or
    -- later (waiting, counted up to 1,000, or started in this round). A joining request of a
    -- higher priority lifts the job, at the turn it would have had as that requester's.
    WITH round AS (
        SELECT coalesce(greatest(
                   (SELECT max(v.turn) FROM video_assets AS v
                    WHERE v.state = 'running' AND v.priority = rank),
                   (SELECT v.turn FROM video_assets AS v
                    WHERE v.state = 'pending' AND v.priority = rank AND v.generation = 0
                    ORDER BY v.turn LIMIT 1)), 0) AS turn
    ),
    ahead AS (
        SELECT (SELECT count(*) FROM (SELECT 1 FROM video_assets AS v
                                      WHERE v.state = 'pending' AND v.owner = me
                                        AND v.priority = rank
                                      LIMIT 1000) AS waiting)
               + (SELECT count(*) FROM video_assets AS v, round
                  WHERE v.state = 'running' AND v.owner = me AND v.priority = rank
                    AND v.turn >= round.turn) AS n
    )
    INSERT INTO video_assets AS a (name, params, max_attempts, owner, priority, turn,
                                   run_at, created_at, updated_at)
    SELECT clean, vidretry_enqueue_request.params, vidretry_enqueue_request.max_attempts, me,
           rank,
           CASE WHEN (SELECT q.fair FROM queue_policy AS q) THEN round.turn + ahead.n
                ELSE 0 END,
           now_, now_, now_
    FROM round, ahead
    ON CONFLICT (name) DO UPDATE
    SET priority = greatest(a.priority, excluded.priority),
        turn = CASE WHEN excluded.priority > a.priority THEN excluded.turn ELSE a.turn END
    RETURNING a.id, a.state, a.generation, (a.xmax = 0)
    INTO vidretry_enqueue_request.asset_id, vidretry_enqueue_request.state, generation_,
         vidretry_enqueue_request.created;
    retried := false;
    ready_queued := false;
    IF vidretry_enqueue_request.state = 'cancelled' THEN
        -- Nobody wanted it any more; now somebody does: made afresh, a new generation.
        UPDATE video_assets AS v
        SET state = 'pending', attempts = 0, run_at = now_, generation = v.generation + 1,
            finished_at = NULL, updated_at = now_
        WHERE v.id = vidretry_enqueue_request.asset_id AND v.state = 'cancelled'
        RETURNING v.generation INTO generation_;
        INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
        VALUES (vidretry_enqueue_request.asset_id, generation_, 'reopened', who, now_);
        PERFORM pg_notify('vidretry_jobs', vidretry_enqueue_request.asset_id::text);
        vidretry_enqueue_request.state := 'pending';
    END IF;
    IF me IS NOT NULL THEN
        -- Asking twice is one request; one the user cancelled before is theirs again.
        WITH request AS (
            INSERT INTO user_requests AS r (asset_id, user_id, chat_id, state, created_at,
                                            updated_at)
            VALUES (vidretry_enqueue_request.asset_id, me, chat,
                    CASE vidretry_enqueue_request.state WHEN 'available' THEN 'done'
                                                        WHEN 'failed' THEN 'failed'
                                                        ELSE 'pending' END,
                    now_, now_)
            ON CONFLICT (asset_id, user_id) DO UPDATE
            SET state = excluded.state, chat_id = excluded.chat_id,
                updated_at = excluded.updated_at, accept_message_id = NULL, shown = NULL,
                checked_at = NULL, edited_at = NULL
            WHERE r.state = 'cancelled'
            RETURNING r.asset_id
        )
        INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
        SELECT request.asset_id, generation_,
               CASE WHEN vidretry_enqueue_request.created THEN 'enqueued' ELSE 'requested' END,
               who, now_
        FROM request;
        IF vidretry_enqueue_request.state = 'available' AND NOT vidretry_enqueue_request.created
        THEN
            -- Already made: tell them at once (the outbox's unique key makes a repeat a no-op).
            WITH asset AS (
                SELECT v.id, v.name, v.generation, v.result FROM video_assets AS v
                WHERE v.id = vidretry_enqueue_request.asset_id AND v.state = 'available'
            ),
            queued AS (
                INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation,
                                           payload, next_attempt_at, created_at, updated_at)
                SELECT asset.id, me, chat, 'ready', asset.generation,
                       jsonb_build_object('name', asset.name, 'result', asset.result),
                       now_, now_, now_
                FROM asset
                ON CONFLICT (asset_id, user_id, kind, generation) DO NOTHING
                RETURNING notifications.id
            )
            SELECT count(*) > 0 INTO vidretry_enqueue_request.ready_queued FROM queued;
            IF vidretry_enqueue_request.ready_queued THEN
                PERFORM pg_notify('vidretry_outbox', vidretry_enqueue_request.asset_id::text);
            END IF;
        END IF;
    ELSIF vidretry_enqueue_request.created THEN
        INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
        VALUES (vidretry_enqueue_request.asset_id, generation_, 'enqueued', who, now_);
    END IF;
    IF vidretry_enqueue_request.created THEN
        PERFORM pg_notify('vidretry_jobs', vidretry_enqueue_request.asset_id::text);
    ELSIF vidretry_enqueue_request.state = 'failed' THEN
        SELECT * INTO again FROM vidretry_retry_asset(
            vidretry_enqueue_request.asset_id, who, NULL, me, 'asked again', at_time);
        IF again.outcome = 'retried' THEN
            vidretry_enqueue_request.state := 'pending';
            retried := true;
        END IF;
    END IF;
END;
$$;

-- The place of a pending asset among the jobs a worker will claim before it (claim_jobs'
-- order: higher priority, then retried jobs, then by turn, due time and id), how many run
-- now, and the median of the last 50 attempts' durations (claim to outcome): what the bot
-- says about the wait. No row for an asset that is not pending. Jobs enqueued later may
-- still come before it (a user's first job goes before another user's backlog): the place
-- is where it stands now.
CREATE FUNCTION vidretry_place_in_line(asset_id bigint)
RETURNS TABLE (place bigint, running bigint, median_seconds float8)
LANGUAGE sql STABLE AS $$
WITH me AS (
    SELECT id, priority, generation, turn, run_at FROM video_assets
    WHERE id = asset_id AND state = 'pending'
),
ahead AS (
    -- Two ranges of the claim index: every higher priority, and the jobs before this one
    -- within its own.
    SELECT (SELECT count(*) FROM video_assets AS a, me
            WHERE a.state = 'pending' AND a.priority > me.priority)
           + (SELECT count(*) FROM video_assets AS a, me
              WHERE a.state = 'pending' AND a.priority = me.priority
                AND ((a.generation = 0), a.turn, a.run_at, a.id)
                    < ((me.generation = 0), me.turn, me.run_at, me.id)) AS n
),
running AS (
    SELECT count(*) AS n FROM video_assets WHERE state = 'running'
),
finished AS (
    -- The newest outcomes, through the primary key backwards; each with its claim.
    SELECT e.asset_id, e.generation, e.attempt, e.created_at
    FROM job_events AS e
    WHERE e.kind IN ('succeeded', 'attempt_failed')
    ORDER BY e.id DESC
    LIMIT 50
),
durations AS (
    SELECT extract(epoch FROM f.created_at - c.created_at) AS seconds
    FROM finished AS f
    JOIN LATERAL (
        SELECT e.created_at FROM job_events AS e
        WHERE e.asset_id = f.asset_id AND e.generation = f.generation
          AND e.attempt = f.attempt AND e.kind = 'claimed'
        ORDER BY e.id DESC
        LIMIT 1
    ) AS c ON true
)
SELECT ahead.n + 1, running.n,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM durations)::float8
FROM me, ahead, running;
$$;

-- -- The public interface, version 1 -------------------------------------------------------

-- The interface's version: 1 until a name, an argument, a result or a SQLSTATE changes.
CREATE FUNCTION vidretry_interface_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;

-- Ask for a video for a Telegram user (user_id NULL: nobody waits; the job is its own owner)
-- in the caller's transaction: its asset id, a new one or the one that has this name. A
-- rollback asks for nothing; the workers are woken at commit. Attempts per generation are the
-- workers' [worker] max_attempts.
CREATE FUNCTION vidretry_enqueue(
    name text, user_id bigint, chat_id bigint DEFAULT NULL, params jsonb DEFAULT '{}',
    priority integer DEFAULT 0
) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
SELECT asset_id FROM vidretry_enqueue_request(
    name, user_id, chat_id, params, priority,
    (SELECT max_attempts FROM queue_policy), NULL, NULL);
$$;

-- The retry button's rules for Telegram user "user_id" (a host bot's button handler calls it
-- with the presser): the asset must be failed, the user must have asked for it (or be one of
-- the notifiers' [telegram] admins), and a user who is no admin has at most
-- max_retries_per_user_per_day retries in 24 hours. Returns the new generation; the users who
-- were told of the failure wait again and the workers are woken at commit.
CREATE FUNCTION vidretry_retry(asset_id bigint, user_id bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    asset CONSTANT bigint := vidretry_retry.asset_id;
    presser CONSTANT bigint := vidretry_retry.user_id;
    label CONSTANT text := 'telegram:' || vidretry_retry.user_id;
    policy record;
    result record;
BEGIN
    IF asset IS NULL OR presser IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = 'vidretry_retry needs an asset id and a Telegram user id';
    END IF;
    PERFORM vidretry_check_ids(presser, NULL, asset);
    SELECT q.admins, q.max_retries_per_user_per_day INTO policy FROM queue_policy AS q;
    IF NOT presser = ANY (policy.admins) AND (
        SELECT count(*) FROM job_events AS e
        WHERE e.kind = 'retried' AND e.actor = label AND e.created_at > now() - interval '1 day'
    ) >= policy.max_retries_per_user_per_day AND EXISTS (
        SELECT 1 FROM video_assets AS a JOIN user_requests AS r ON r.asset_id = a.id
        WHERE a.id = asset AND a.state = 'failed' AND r.user_id = presser
    ) THEN
        RAISE EXCEPTION USING ERRCODE = 'VR014', MESSAGE = format(
            'user %s used up their %s retries for today', presser,
            policy.max_retries_per_user_per_day);
    END IF;
    SELECT * INTO result FROM vidretry_retry_asset(
        asset, label, NULL, CASE WHEN presser = ANY (policy.admins) THEN NULL ELSE presser END,
        'retry button (host bot)', NULL);
    CASE result.outcome
        WHEN 'retried' THEN RETURN result.generation;
        WHEN 'not_found' THEN
            RAISE EXCEPTION USING ERRCODE = 'VR010', MESSAGE = format('asset %s not found', asset);
        WHEN 'forbidden' THEN
            RAISE EXCEPTION USING ERRCODE = 'VR011',
                MESSAGE = format('user %s may not retry asset %s', presser, asset);
        ELSE
            RAISE EXCEPTION USING ERRCODE = 'VR012', MESSAGE = format(
                'asset %s is not failed (%s): nothing to retry', asset, result.state);
    END CASE;
END;
$$;

-- The cancel button's rule for Telegram user "user_id": takes back that user's request;
-- 'withdrawn' (others still wait, the job goes on) or 'cancelled' (nobody waits any more: the
-- job is cancelled, a running generator stopped, no attempt counted).
CREATE FUNCTION vidretry_cancel(asset_id bigint, user_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    asset CONSTANT bigint := vidretry_cancel.asset_id;
    presser CONSTANT bigint := vidretry_cancel.user_id;
    result record;
BEGIN
    IF asset IS NULL OR presser IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = 'vidretry_cancel needs an asset id and a Telegram user id';
    END IF;
    PERFORM vidretry_check_ids(presser, NULL, asset);
    SELECT * INTO result FROM vidretry_withdraw_request(asset, presser, NULL, NULL);
    CASE result.outcome
        WHEN 'withdrawn', 'cancelled' THEN RETURN result.outcome;
        WHEN 'not_found' THEN
            RAISE EXCEPTION USING ERRCODE = 'VR010', MESSAGE = format('asset %s not found', asset);
        WHEN 'forbidden' THEN
            RAISE EXCEPTION USING ERRCODE = 'VR011',
                MESSAGE = format('user %s has no request on asset %s', presser, asset);
        ELSE
            RAISE EXCEPTION USING ERRCODE = 'VR013', MESSAGE = format(
                'asset %s is %s: nothing to cancel', asset, result.state);
    END CASE;
END;
$$;

-- An asset as a host bot shows it: no row for an unknown id. "place" is its place in line
-- while it is pending (else NULL), in the claim's own order.
CREATE FUNCTION vidretry_asset(asset_id bigint)
RETURNS TABLE (id bigint, name text, state text, priority smallint, attempts integer,
               max_attempts integer, generation integer, result text, last_error text,
               place bigint, updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
SELECT a.id, a.name, a.state, a.priority, a.attempts, a.max_attempts, a.generation,
       a.result, a.last_error, (SELECT p.place FROM vidretry_place_in_line(a.id) AS p),
       a.updated_at
FROM video_assets AS a
WHERE a.id = asset_id;
$$;

-- A host bot sent its own message accepting a request (with the Bot API, say): vidretry's
-- notifier keeps it current, as it does its own acceptances — edited into the place in line,
-- then the video's progress, with a cancel button (cancel_video:<asset id>:<generation>).
-- False when "user_id" has no waiting request on the asset (nothing to keep current).
CREATE FUNCTION vidretry_track_message(asset_id bigint, user_id bigint, message_id bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    PERFORM vidretry_check_ids(vidretry_track_message.user_id, NULL,
                               vidretry_track_message.asset_id);
    IF vidretry_track_message.message_id IS NULL OR vidretry_track_message.message_id < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002', MESSAGE = format(
            'message id must be a positive Telegram message id, got %s',
            coalesce(vidretry_track_message.message_id::text, 'null'));
    END IF;
    UPDATE user_requests AS r
    SET accept_message_id = vidretry_track_message.message_id, shown = NULL, checked_at = NULL,
        edited_at = NULL
    WHERE r.asset_id = vidretry_track_message.asset_id
      AND r.user_id = vidretry_track_message.user_id AND r.state = 'pending';
    RETURN FOUND;
END;
$$;

REVOKE ALL ON FUNCTION vidretry_enqueue(text, bigint, bigint, jsonb, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION vidretry_retry(bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION vidretry_cancel(bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION vidretry_asset(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION vidretry_track_message(bigint, bigint, bigint) FROM PUBLIC;
