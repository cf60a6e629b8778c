-- The retry button's rules for Telegram user "user_id" (a host bot's button handler calls it
-- with the presser): the asset must be failed, the user must have asked for it (or be one of
-- the notifiers' [telegram] admins), and a user who is no admin has at most
-- max_retries_per_user_per_day retries in 24 hours. Returns the new generation; the users who
-- were told of the failure wait again and the workers are woken at commit.
CREATE OR REPLACE FUNCTION vidretry_retry(asset_id bigint, user_id bigint) RETURNS integer
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

REVOKE ALL ON FUNCTION vidretry_retry(bigint, bigint) FROM PUBLIC;
