-- The history is evidence (schema 1): its trigger refuses to rewrite it. An UPDATE is always
-- refused; a DELETE only reaches this function for rows newer than the cut-off a pruning
-- transaction sets (the trigger's WHEN, schema 11). Here so that its search path is pinned
-- like every other function of vidretry's.
CREATE OR REPLACE FUNCTION job_events_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only';
END;
$$;
