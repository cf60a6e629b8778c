-- The retry button pressed by Telegram user "user_id", answered without an error for what a
-- press can meet (interface version 2): the rules of vidretry_retry, with the outcome
-- returned rather than raised, so that what the press wrote stays with the caller's
-- transaction: 'retried' (the new retry round), 'out_of_retries' (the user's retries for
-- today are used up, and the admins are told: an 'alert' each, sent by the notifier),
-- 'not_found', 'forbidden' (the user never asked for it and is no admin) or 'not_failed',
-- with the asset's retry round (as "generation", the column's name). A host bot's button
-- handler calls this one to have the admins told: vidretry_retry's VR014 takes the alert
-- back with the transaction it ends.
CREATE OR REPLACE FUNCTION vidretry_press_retry(asset_id bigint, user_id bigint)
RETURNS TABLE (outcome text, generation integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    asset CONSTANT bigint := vidretry_press_retry.asset_id;
    presser CONSTANT bigint := vidretry_press_retry.user_id;
    result record;
BEGIN
    IF asset IS NULL OR presser IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = 'vidretry_press_retry needs an asset id and a Telegram user id';
    END IF;
    PERFORM vidretry_check_ids(presser, NULL, asset);
    SELECT * INTO result FROM vidretry_retry_pressed(
        asset, presser, NULL, 'retry button (host bot)', NULL);
    outcome := CASE WHEN result.outcome = 'stale' THEN 'not_failed' ELSE result.outcome END;
    generation := result.generation;
    RETURN NEXT;
END;
$$;

REVOKE ALL ON FUNCTION vidretry_press_retry(bigint, bigint) FROM PUBLIC;
