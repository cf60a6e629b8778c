-- vidretry schema, version 9: status stays cheap however much history piles up.
--
-- `status` and /metrics count dead notifications; they are rare, so a partial index keeps
-- that count from reading every sent notification.
CREATE INDEX notifications_dead ON notifications (id) WHERE state = 'dead';

-- Pruning walks the history by windows of ids (its primary key leads with asset_id). Ids
-- grow with time, so a BRIN index of a few pages finds a window's rows in a handful of
-- block ranges, for next to nothing per insert.
CREATE INDEX job_events_id_brin ON job_events USING brin (id);
