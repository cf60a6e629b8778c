-- vidretry schema, version 22: each outage of the video store has a number of its own, and
-- the admins are told of each, however soon one follows another.
-- kind: expand
--
-- The admins' store_down notice of an outage is unique per "generation" (the outbox's key
-- for notices of no asset): the outage's start in minutes until now, which two outages
-- begun in one minute (with [storage] alert_after_seconds under a minute) shared, and the
-- second went untold. From now on it is this number, drawn as the outage is noted, whoever
-- notes it (vidretry 0.19.0's workers too: they name the other columns). 0.19.0's workers
-- still tell by the minute, a range far above these numbers.
CREATE SEQUENCE IF NOT EXISTS store_outage_numbers AS integer;
ALTER TABLE store_outage ADD COLUMN IF NOT EXISTS number integer NOT NULL
    DEFAULT nextval('store_outage_numbers');
ALTER SEQUENCE store_outage_numbers OWNED BY store_outage.number;
