-- vidretry schema, version 7: retention. History and delivered notifications may be pruned.
--
-- The history stays append-only for everybody else: the trigger now lets a DELETE through
-- only for rows older than the cut-off that `vidretry db prune` (or a worker's background
-- pruning) sets for its own transaction, and never lets an UPDATE through.
CREATE OR REPLACE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.created_at < nullif(current_setting('vidretry.prune_before', true), '')::timestamptz
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'job_events is append-only';
END;
$$;

-- Pruning finds old rows by time. Both tables are written in time order, so a BRIN index
-- (a few pages, next to nothing per insert) narrows each batch to the old end of the table.
CREATE INDEX job_events_created_brin ON job_events USING brin (created_at);
CREATE INDEX notifications_created_brin ON notifications USING brin (created_at);
