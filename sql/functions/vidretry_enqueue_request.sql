-- vidretry_enqueue_request_v2 without its "out_of_retries": what vidretry 0.19.0 calls to ask
-- for a video (its named statement enqueue_request). The rules are v2's, the daily retry
-- quota of asking again included. Dropped by a contract step once no supported release
-- calls it.
CREATE OR REPLACE FUNCTION vidretry_enqueue_request(
    name text, user_id bigint, chat_id bigint, params jsonb, priority integer,
    max_attempts integer, actor text, at_time timestamptz,
    OUT asset_id bigint, OUT state text, OUT created boolean, OUT retried boolean,
    OUT ready_queued boolean
) LANGUAGE sql SET search_path FROM CURRENT AS $$
SELECT r.asset_id, r.state, r.created, r.retried, r.ready_queued
FROM vidretry_enqueue_request_v2(name, user_id, chat_id, params, priority, max_attempts, actor,
                                 at_time) AS r;
$$;
