-- Ask for a video for a Telegram user (user_id NULL: nobody waits; the job is its own owner)
-- in the caller's transaction: its asset id, a new one or the one that has this name. A
-- rollback asks for nothing; the workers are woken at commit. Attempts per retry round are the
-- workers' [worker] max_attempts. Asking again for a failed asset retries it within the
-- user's daily retry quota; a user out of retries gets the asset id all the same, the asset
-- stays failed (vidretry_asset says so), and the admins' alert commits with the caller.
CREATE OR REPLACE FUNCTION vidretry_enqueue(
    name text, user_id bigint, chat_id bigint DEFAULT NULL, params jsonb DEFAULT '{}',
    priority integer DEFAULT 0
) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
SELECT asset_id FROM vidretry_enqueue_request_v2(
    name, user_id, chat_id, params, priority,
    (SELECT max_attempts FROM queue_policy), NULL, NULL);
$$;

REVOKE ALL ON FUNCTION vidretry_enqueue(text, bigint, bigint, jsonb, integer) FROM PUBLIC;
