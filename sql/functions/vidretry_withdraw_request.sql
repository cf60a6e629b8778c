-- One user takes back their request (the cancel button, vidretry.queue.cancel.withdraw): a
-- waiting one, or one whose video or failure message has not gone out yet (that message is
-- never sent). A button names the retry round it was made for: one from before a retry or a
-- re-opening changes nothing. When nobody waits any more, the job is cancelled too. The
-- asset row is locked first; each step is a statement of its own, in that lock's order.
CREATE OR REPLACE FUNCTION vidretry_withdraw_request(
    asset_id bigint, user_id bigint, button_generation integer, at_time timestamptz,
    OUT outcome text, OUT state text, OUT was_running boolean
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
