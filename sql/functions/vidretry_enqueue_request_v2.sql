-- Ask for a video (vidretry.queue.enqueue.enqueue, the bot's /video, the console, and the
-- SQL interface's vidretry_enqueue): create the asset for a name or join the one that has it;
-- "user_id" waits for it (none: nobody is told, the job is its own owner). A new job gets its
-- turn in the fair order (schema 17) and wakes the workers at commit. An asset already
-- available answers the user at once (a 'ready' outbox row); a failed one is retried with
-- this user as the actor, within their daily retry quota (vidretry_out_of_retries, the
-- quota's one rule, as for the retry button): a user out of retries changes nothing — the
-- asset stays failed, no request is recorded — "out_of_retries" is true, and the admins are
-- told by the same alert as for the button. A cancelled asset is re-opened in a new
-- retry round. A request of a higher priority lifts a job that waits. The insert or the
-- no-op update of the name's row locks it first, so a worker finishing the job concurrently
-- either commits before us (we see its final state) or waits for our request.
CREATE OR REPLACE FUNCTION vidretry_enqueue_request_v2(
    name text, user_id bigint, chat_id bigint, params jsonb, priority integer,
    max_attempts integer, actor text, at_time timestamptz,
    OUT asset_id bigint, OUT state text, OUT created boolean, OUT retried boolean,
    OUT ready_queued boolean, OUT out_of_retries boolean
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    now_ timestamptz := coalesce(at_time, now());
    me CONSTANT bigint := vidretry_enqueue_request_v2.user_id;  -- the requester: the owner if new
    rank CONSTANT integer := vidretry_enqueue_request_v2.priority;
    who CONSTANT text := coalesce(vidretry_enqueue_request_v2.actor, 'telegram:' || me,
                                  'sql:' || session_user);
    chat CONSTANT bigint := coalesce(vidretry_enqueue_request_v2.chat_id, me);
    clean text;
    generation_ integer;
    again record;
BEGIN
    clean := vidretry_normalise_name(vidretry_enqueue_request_v2.name);
    PERFORM vidretry_check_ids(me, vidretry_enqueue_request_v2.chat_id, NULL);
    IF me IS NULL AND vidretry_enqueue_request_v2.chat_id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = 'a chat id needs the user id of the requester';
    END IF;
    IF rank IS NULL OR rank NOT BETWEEN 0 AND 9 THEN
        RAISE EXCEPTION USING ERRCODE = 'VR003', MESSAGE = format(
            'priority must be an integer from 0 to 9 (higher first), got %s',
            coalesce(rank::text, 'null'));
    END IF;
    IF vidretry_enqueue_request_v2.params IS NULL
       OR jsonb_typeof(vidretry_enqueue_request_v2.params) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'VR004', MESSAGE = format(
            'params must be a JSON object, got %s',
            coalesce(jsonb_typeof(vidretry_enqueue_request_v2.params), 'null'));
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
    SELECT clean, vidretry_enqueue_request_v2.params, vidretry_enqueue_request_v2.max_attempts, me,
           rank,
           CASE WHEN (SELECT q.fair FROM queue_policy AS q) THEN round.turn + ahead.n
                ELSE 0 END,
           now_, now_, now_
    FROM round, ahead
    ON CONFLICT (name) DO UPDATE
    SET priority = greatest(a.priority, excluded.priority),
        turn = CASE WHEN excluded.priority > a.priority THEN excluded.turn ELSE a.turn END
    RETURNING a.id, a.state, a.generation, (a.xmax = 0)
    INTO vidretry_enqueue_request_v2.asset_id, vidretry_enqueue_request_v2.state, generation_,
         vidretry_enqueue_request_v2.created;
    retried := false;
    ready_queued := false;
    vidretry_enqueue_request_v2.out_of_retries := false;
    IF vidretry_enqueue_request_v2.state = 'failed' AND me IS NOT NULL
       AND vidretry_out_of_retries(vidretry_enqueue_request_v2.asset_id, me, true, at_time) THEN
        -- Asking again would retry it: refused as the button would be (the admins told).
        vidretry_enqueue_request_v2.out_of_retries := true;
        RETURN;
    END IF;
    IF vidretry_enqueue_request_v2.state = 'cancelled' THEN
        -- Nobody wanted it any more; now somebody does: made afresh, a new retry round.
        UPDATE video_assets AS v
        SET state = 'pending', attempts = 0, run_at = now_, generation = v.generation + 1,
            finished_at = NULL, updated_at = now_
        WHERE v.id = vidretry_enqueue_request_v2.asset_id AND v.state = 'cancelled'
        RETURNING v.generation INTO generation_;
        INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
        VALUES (vidretry_enqueue_request_v2.asset_id, generation_, 'reopened', who, now_);
        PERFORM pg_notify('vidretry_jobs', vidretry_enqueue_request_v2.asset_id::text);
        vidretry_enqueue_request_v2.state := 'pending';
    END IF;
    IF me IS NOT NULL THEN
        -- Asking twice is one request; one the user cancelled before is theirs again.
        WITH request AS (
            INSERT INTO user_requests AS r (asset_id, user_id, chat_id, state, created_at,
                                            updated_at)
            VALUES (vidretry_enqueue_request_v2.asset_id, me, chat,
                    CASE vidretry_enqueue_request_v2.state WHEN 'available' THEN 'done'
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
               CASE WHEN vidretry_enqueue_request_v2.created THEN 'enqueued' ELSE 'requested' END,
               who, now_
        FROM request;
        IF vidretry_enqueue_request_v2.state = 'available' AND NOT vidretry_enqueue_request_v2.created
        THEN
            -- Already made: tell them at once (the outbox's unique key makes a repeat a no-op).
            WITH asset AS (
                SELECT v.id, v.name, v.generation, v.result FROM video_assets AS v
                WHERE v.id = vidretry_enqueue_request_v2.asset_id AND v.state = 'available'
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
            SELECT count(*) > 0 INTO vidretry_enqueue_request_v2.ready_queued FROM queued;
            IF vidretry_enqueue_request_v2.ready_queued THEN
                PERFORM pg_notify('vidretry_outbox', vidretry_enqueue_request_v2.asset_id::text);
            END IF;
        END IF;
    ELSIF vidretry_enqueue_request_v2.created THEN
        INSERT INTO job_events (asset_id, generation, kind, actor, created_at)
        VALUES (vidretry_enqueue_request_v2.asset_id, generation_, 'enqueued', who, now_);
    END IF;
    IF vidretry_enqueue_request_v2.created THEN
        PERFORM pg_notify('vidretry_jobs', vidretry_enqueue_request_v2.asset_id::text);
    ELSIF vidretry_enqueue_request_v2.state = 'failed' THEN
        SELECT * INTO again FROM vidretry_retry_asset(
            vidretry_enqueue_request_v2.asset_id, who, NULL, me, 'asked again', at_time);
        IF again.outcome = 'retried' THEN
            vidretry_enqueue_request_v2.state := 'pending';
            retried := true;
        END IF;
    END IF;
END;
$$;
