-- The retry button pressed by Telegram user "user_id", the one implementation of its rules:
-- the daily retry quota first (vidretry_out_of_retries: 'out_of_retries', the admins told),
-- then vidretry's one retry service (vidretry_retry_asset) as that user, who must have asked
-- for the asset unless they are one of the notifiers' [telegram] admins (queue_policy).
-- "button_generation" (if any) must still be the asset's. vidretry's own button
-- (vidretry.queue.retry.press) and the SQL interface's vidretry_press_retry and vidretry_retry
-- call it.
CREATE OR REPLACE FUNCTION vidretry_retry_pressed(
    asset_id bigint, user_id bigint, button_generation integer, reason text,
    at_time timestamptz,
    OUT outcome text, OUT state text, OUT generation integer,
    OUT reopened_users bigint[], OUT superseded integer
) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    asset CONSTANT bigint := vidretry_retry_pressed.asset_id;
    presser CONSTANT bigint := vidretry_retry_pressed.user_id;
    admins CONSTANT bigint[] := (SELECT q.admins FROM queue_policy AS q);
    result record;
BEGIN
    IF vidretry_out_of_retries(asset, presser, false, at_time) THEN
        outcome := 'out_of_retries';
        SELECT a.state, a.generation
        INTO vidretry_retry_pressed.state, vidretry_retry_pressed.generation
        FROM video_assets AS a WHERE a.id = asset;
        reopened_users := '{}';
        superseded := 0;
        RETURN;
    END IF;
    SELECT * INTO result FROM vidretry_retry_asset(
        asset, 'telegram:' || presser, button_generation,
        CASE WHEN presser = ANY (admins) THEN NULL ELSE presser END,
        reason, at_time);
    outcome := result.outcome;
    state := result.state;
    generation := result.generation;
    reopened_users := result.reopened_users;
    superseded := result.superseded;
END;
$$;
