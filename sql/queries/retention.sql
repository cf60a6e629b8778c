-- Named statements for pruning old history (vidretry/queue/maintenance/retention.py). Each
-- batch is its own short transaction: it locks only the rows it deletes, so workers never
-- wait on it.

-- name: allow_pruning_before
-- For this transaction only, the history's append-only trigger lets rows older than
-- "before" be deleted (sql/migrations/0007_retention.sql).
SELECT set_config('vidretry.prune_before', %(before)s::timestamptz::text, true);

-- name: try_prune_lock
-- One pruning process at a time: a transaction-level advisory lock, taken or not at once.
SELECT pg_try_advisory_xact_lock(%(key)s) AS locked;

-- name: prune_range
-- The ids pruning walks: from the oldest row to the newest one created before "before". Rows
-- are written in time order, so almost every id in between is old; the BRIN index on
-- created_at finds the upper bound.
SELECT (SELECT min(id) FROM job_events) AS events_from,
       (SELECT max(id) FROM job_events WHERE created_at < %(before)s) AS events,
       (SELECT min(id) FROM notifications) AS notifications_from,
       (SELECT max(id) FROM notifications WHERE created_at < %(before)s) AS notifications;

-- name: prune_events
-- Delete the history rows older than "before" whose ids are in ("after", "upto"]: one
-- window of the primary key per batch. A window, not a LIMIT: the plan is a range scan of
-- the primary key whatever the planner estimates, so each batch costs what the first did
-- (it never re-reads rows earlier batches deleted, which stay until vacuum).
WITH gone AS (
    DELETE FROM job_events
    WHERE id > %(after)s AND id <= %(upto)s AND created_at < %(before)s
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: prune_notifications
-- Delete the notifications in a final state (sent, dead, superseded) created before
-- "before" whose ids are in ("after", "upto"]. Pending and sending rows are never touched.
WITH gone AS (
    DELETE FROM notifications
    WHERE id > %(after)s AND id <= %(upto)s AND created_at < %(before)s
      AND state IN ('sent', 'dead', 'superseded')
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: prune_assets
-- With --assets only: delete up to "batch" finished assets (available, failed or cancelled) finished
-- before "before" that nobody still waits for and that have nothing left to deliver, with
-- their requests. Their history and notifications are older than the cut-off and go with
-- the other statements. Returns the kept videos of the deleted assets too ("videos": their
-- URIs) for the caller to delete from the store once this commits: no row ever points at
-- bytes already gone, and a store that fails leaves only orphaned objects behind.
WITH doomed AS (
    SELECT a.id FROM video_assets AS a
    WHERE a.state IN ('available', 'failed', 'cancelled') AND a.finished_at < %(before)s
      AND NOT EXISTS (SELECT 1 FROM user_requests AS r
                      WHERE r.asset_id = a.id AND r.state = 'pending')
      AND NOT EXISTS (SELECT 1 FROM notifications AS n
                      WHERE n.asset_id = a.id AND n.state IN ('pending', 'sending'))
    ORDER BY a.id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
),
requests AS (
    DELETE FROM user_requests WHERE asset_id IN (SELECT id FROM doomed)
),
gone AS (
    DELETE FROM video_assets WHERE id IN (SELECT id FROM doomed)
    RETURNING result, result_deleted_at
)
SELECT count(*) AS deleted,
       coalesce(array_agg(result) FILTER (WHERE result IS NOT NULL
                                           AND result_deleted_at IS NULL), '{}') AS videos
FROM gone;

-- name: prunable
-- What a prune would delete (--dry-run, and the progress bar's total).
SELECT (SELECT count(*) FROM job_events WHERE created_at < %(before)s) AS events,
       (SELECT count(*) FROM notifications
        WHERE created_at < %(before)s AND state IN ('sent', 'dead', 'superseded'))
           AS notifications,
       (SELECT count(*) FROM video_assets AS a
        WHERE a.state IN ('available', 'failed', 'cancelled') AND a.finished_at < %(before)s
          AND NOT EXISTS (SELECT 1 FROM user_requests AS r
                          WHERE r.asset_id = a.id AND r.state = 'pending')
          AND NOT EXISTS (SELECT 1 FROM notifications AS n
                          WHERE n.asset_id = a.id AND n.state IN ('pending', 'sending')))
           AS assets;

-- name: prune_cutoff
-- "Older than" in the database's time (the one clock every process shares).
SELECT coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s) AS before;

-- name: record_prune
-- A prune finished: the console's overview shows when, by whom and how much went.
INSERT INTO last_prune (pruned_at, pruned_by, deleted)
VALUES (now(), %(by)s, %(deleted)s)
ON CONFLICT (id) DO UPDATE
SET pruned_at = excluded.pruned_at, pruned_by = excluded.pruned_by, deleted = excluded.deleted;
