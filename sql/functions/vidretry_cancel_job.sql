-- Cancel a job still to be made or being made (the named statement cancel_job calls it): a
-- pending one is never claimed; a running one loses its lease (its worker's heartbeat
-- notices and stops the generator) and the attempt it was charged at the claim is given
-- back. Its generator keeps its slot of max_running until it is gone (generators_stopping). With "unwanted" (a user's withdrawal) only when nobody waits for it any more;
-- without, an operator's cancel of the whole asset, whoever waits. The asset row is locked
-- first either way (the lock order everywhere: asset, requests, outbox).
CREATE OR REPLACE FUNCTION vidretry_cancel_job(
    asset_id bigint, actor text, reason text, unwanted boolean, at_time timestamptz
) RETURNS TABLE (id bigint, was text)
LANGUAGE sql SET search_path FROM CURRENT AS $$
WITH old AS (
    SELECT id, state, lease_owner, lease_token, lease_expires_at
    FROM video_assets WHERE id = asset_id FOR UPDATE
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
    RETURNING a.id, a.generation, old.state AS was, old.lease_owner, old.lease_token,
              old.lease_expires_at
),
stopping AS (
    INSERT INTO generators_stopping (lease_token, asset_id, owner, gone_by)
    SELECT lease_token, id, lease_owner, vidretry_generator_gone_by(lease_expires_at)
    FROM cancelled
    WHERE was = 'running'
    ON CONFLICT (lease_token) DO NOTHING
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
