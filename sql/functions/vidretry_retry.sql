-- The retry button's rules for Telegram user "user_id" (a host bot's button handler calls it
-- with the presser): the asset must be failed, the user must have asked for it (or be one of
-- the notifiers' [telegram] admins), and a user who is no admin has at most
-- max_retries_per_user_per_day retries in 24 hours (vidretry_retry_pressed, the button's one
-- implementation). Returns the new retry round; the users who were told of the failure wait
-- again and the workers are woken at commit. A refusal is an error, which ends the caller's
-- transaction: with it goes the admins' alert of a user out of retries (VR014), which
-- vidretry_press_retry keeps.
CREATE OR REPLACE FUNCTION vidretry_retry(asset_id bigint, user_id bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    asset CONSTANT bigint := vidretry_retry.asset_id;
    presser CONSTANT bigint := vidretry_retry.user_id;
    result record;
BEGIN
    IF asset IS NULL OR presser IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VR002',
            MESSAGE = 'vidretry_retry needs an asset id and a Telegram user id';
    END IF;
    PERFORM vidretry_check_ids(presser, NULL, asset);
    SELECT * INTO result FROM vidretry_retry_pressed(
        asset, presser, NULL, 'retry button (host bot)', NULL);
    CASE result.outcome
        WHEN 'retried' THEN RETURN result.generation;
        WHEN 'out_of_retries' THEN
            RAISE EXCEPTION USING ERRCODE = 'VR014', MESSAGE = format(
                'user %s used up their %s retries for today', presser,
                (SELECT q.max_retries_per_user_per_day FROM queue_policy AS q));
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

REVOKE ALL ON FUNCTION vidretry_retry(bigint, bigint) FROM PUBLIC;
