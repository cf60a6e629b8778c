-- The daily retry quota, the one place it is decided: a Telegram user who is not one of the
-- notifiers' [telegram] admins and retried max_retries_per_user_per_day times in the last 24
-- hours may retry no failed asset more today, neither by its button (on an asset they asked
-- for) nor by asking for it again ("asking_again"). Both written to queue_policy by the
-- leading notifier. True when "user_id" is refused so for "asset_id": then each admin is told
-- (an 'alert' in the outbox, naming the asset, the user and the last error; one per admin and
-- failure however often the user tries, by the outbox's unique key), woken at commit.
-- Called by the button (vidretry_retry_pressed: vidretry's own, the SQL interface's
-- vidretry_press_retry, and vidretry_retry, which raises VR014 instead: an error takes the
-- alert back with the rest of the caller's transaction) and by asking again
-- (vidretry_enqueue_request_v2: vidretry's bot, command line and console, and the SQL
-- interface's vidretry_enqueue, which answers with the asset id and leaves it failed).
CREATE OR REPLACE FUNCTION vidretry_out_of_retries(
    asset_id bigint, user_id bigint, asking_again boolean, at_time timestamptz
) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    now_ timestamptz := coalesce(at_time, now());
    asset CONSTANT bigint := vidretry_out_of_retries.asset_id;
    who CONSTANT bigint := vidretry_out_of_retries.user_id;
    policy record;
    told integer;
BEGIN
    SELECT q.admins, q.max_retries_per_user_per_day INTO policy FROM queue_policy AS q;
    IF who = ANY (policy.admins) THEN
        RETURN false;
    END IF;
    -- The index job_events_retries_by_actor serves the count.
    IF (SELECT count(*) FROM job_events AS e
        WHERE e.kind = 'retried' AND e.actor = 'telegram:' || who
          AND e.created_at > now_ - interval '1 day') < policy.max_retries_per_user_per_day THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM video_assets AS a
        WHERE a.id = asset AND a.state = 'failed'
          AND (asking_again OR EXISTS (SELECT 1 FROM user_requests AS r
                                       WHERE r.asset_id = a.id AND r.user_id = who))
    ) THEN
        RETURN false;  -- the retry would change nothing anyway: answered as usual
    END IF;
    WITH queued AS (
        INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                                   next_attempt_at, created_at, updated_at)
        SELECT a.id, admin, admin, 'alert', a.generation,
               jsonb_build_object('name', a.name, 'user', who,
                                  'error', coalesce(a.last_error, '')),
               now_, now_, now_
        FROM video_assets AS a CROSS JOIN unnest(policy.admins) AS admin
        WHERE a.id = asset
        ON CONFLICT (asset_id, user_id, kind, generation) DO NOTHING
        RETURNING id
    )
    SELECT count(*) INTO told FROM queued;
    IF told > 0 THEN
        PERFORM pg_notify('vidretry_outbox', asset::text);
    END IF;
    RETURN true;
END;
$$;
