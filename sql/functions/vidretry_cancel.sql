-- The cancel button's rule for Telegram user "user_id": takes back that user's request;
-- 'withdrawn' (others still wait, the job goes on) or 'cancelled' (nobody waits any more: the
-- job is cancelled, a running generator stopped, no attempt counted).
CREATE OR REPLACE FUNCTION vidretry_cancel(asset_id bigint, user_id bigint) RETURNS text
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

REVOKE ALL ON FUNCTION vidretry_cancel(bigint, bigint) FROM PUBLIC;
