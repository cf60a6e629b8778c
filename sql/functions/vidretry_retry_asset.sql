-- Put a failed asset back in the queue, exactly once: vidretry's one retry service
-- (vidretry.queue.retry). Every condition that makes a retry legal is in the UPDATE's WHERE,
-- so of N concurrent callers exactly one changes it: the asset is failed; the button's
-- retry round ("button_generation", if any) is still the current one; "request_of" (if
-- any) has a request on it.
-- Then, each in a statement of its own (so each sees what a transaction that held the row
-- lock before it committed), the users told of the failure wait again and the failure
-- messages not sent yet are superseded. The workers are woken at commit. When nothing
-- changed, the asset is read only to say why.
CREATE OR REPLACE FUNCTION vidretry_retry_asset(
    asset_id bigint, actor text, button_generation integer, request_of bigint, reason text,
    at_time timestamptz,
    OUT outcome text, OUT state text, OUT generation integer,
    OUT reopened_users bigint[], OUT superseded integer
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
