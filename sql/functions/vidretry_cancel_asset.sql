-- An operator's (or an admin's) cancel of a whole asset, whoever waits for it: the one
-- implementation behind `vidretry cancel`, the console and the bot's /cancel for admins
-- (vidretry.queue.cancel.cancel). The job is cancelled (vidretry_cancel_job: a running
-- generator is stopped by its worker, the attempt given back); then, in a statement of its
-- own so that it sees every request committed by whoever held the asset's lock before,
-- every request still waiting is cancelled and its user told (one 'cancelled' outbox row
-- each, the notifiers woken at commit). "outcome": 'cancelled'; or, when nothing changed,
-- 'not_found', or 'not_open' with the asset's "state" (made, failed or cancelled already).
CREATE OR REPLACE FUNCTION vidretry_cancel_asset(
    asset_id bigint, actor text, reason text, at_time timestamptz,
    OUT outcome text, OUT state text, OUT was_running boolean, OUT told_users bigint[]
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    now_ timestamptz := coalesce(at_time, now());
    asset CONSTANT bigint := vidretry_cancel_asset.asset_id;
    job record;
BEGIN
    was_running := false;
    told_users := '{}';
    SELECT * INTO job FROM vidretry_cancel_job(asset, actor, reason, false, at_time);
    IF job.id IS NULL THEN
        SELECT a.state INTO vidretry_cancel_asset.state FROM video_assets AS a WHERE a.id = asset;
        outcome := CASE WHEN FOUND THEN 'not_open' ELSE 'not_found' END;
        RETURN;
    END IF;
    outcome := 'cancelled';
    was_running := job.was = 'running';
    WITH asset_row AS (
        SELECT a.id, a.name, a.generation FROM video_assets AS a
        WHERE a.id = asset AND a.state = 'cancelled'
    ),
    settled AS (
        UPDATE user_requests AS r
        SET state = 'cancelled', updated_at = now_
        FROM asset_row
        WHERE r.asset_id = asset_row.id AND r.state = 'pending'
        RETURNING r.asset_id, r.user_id, r.chat_id, asset_row.generation,
                  jsonb_build_object('name', asset_row.name) AS payload
    ),
    queued AS (
        INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                                   next_attempt_at, created_at, updated_at)
        SELECT settled.asset_id, settled.user_id, settled.chat_id, 'cancelled',
               settled.generation, settled.payload, now_, now_, now_
        FROM settled
        ON CONFLICT (asset_id, user_id, kind, generation) DO NOTHING
        RETURNING notifications.user_id
    )
    SELECT coalesce(array_agg(queued.user_id ORDER BY queued.user_id), '{}')
    INTO told_users FROM queued;
    IF cardinality(told_users) > 0 THEN
        PERFORM pg_notify('vidretry_outbox', asset::text);
    END IF;
END;
$$;
