-- Named statements for pruning old history (vidretry/retention.py). Each batch is its own
-- short transaction: it locks only the rows it deletes, so workers never wait on it.

-- name: allow_pruning_before
-- For this transaction only, the history's append-only trigger lets rows older than
-- "before" be deleted (sql/migrations/0007_retention.sql).
SELECT set_config('vidretry.prune_before', %(before)s::timestamptz::text, true);

-- name: try_prune_lock
-- One pruning process at a time: a transaction-level advisory lock, taken or not at once.
SELECT pg_try_advisory_xact_lock(%(key)s) AS locked;

-- name: prune_events
-- Delete up to "batch" history rows older than "before".
DELETE FROM job_events
WHERE (asset_id, id) IN (
    SELECT asset_id, id FROM job_events WHERE created_at < %(before)s LIMIT %(batch)s
)
RETURNING 1;

-- name: prune_notifications
-- Delete up to "batch" notifications in a final state (sent, dead, superseded) created
-- before "before". Pending and sending rows are never touched.
DELETE FROM notifications
WHERE id IN (
    SELECT id FROM notifications
    WHERE created_at < %(before)s AND state IN ('sent', 'dead', 'superseded')
    LIMIT %(batch)s
)
RETURNING 1;

-- name: prune_assets
-- With --assets only: delete up to "batch" finished assets (available or failed) finished
-- before "before" that nobody still waits for and that have nothing left to deliver, with
-- their requests. Their history and notifications are older than the cut-off and go with
-- the other statements.
WITH doomed AS (
    SELECT a.id FROM video_assets AS a
    WHERE a.state IN ('available', 'failed') AND a.finished_at < %(before)s
      AND NOT EXISTS (SELECT 1 FROM user_requests AS r
                      WHERE r.asset_id = a.id AND r.state = 'pending')
      AND NOT EXISTS (SELECT 1 FROM notifications AS n
                      WHERE n.asset_id = a.id AND n.state IN ('pending', 'sending'))
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
),
requests AS (
    DELETE FROM user_requests WHERE asset_id IN (SELECT id FROM doomed)
)
DELETE FROM video_assets WHERE id IN (SELECT id FROM doomed)
RETURNING 1;

-- name: prunable
-- What a prune would delete (--dry-run, and the progress bar's total).
SELECT (SELECT count(*) FROM job_events WHERE created_at < %(before)s) AS events,
       (SELECT count(*) FROM notifications
        WHERE created_at < %(before)s AND state IN ('sent', 'dead', 'superseded'))
           AS notifications,
       (SELECT count(*) FROM video_assets AS a
        WHERE a.state IN ('available', 'failed') AND a.finished_at < %(before)s
          AND NOT EXISTS (SELECT 1 FROM user_requests AS r
                          WHERE r.asset_id = a.id AND r.state = 'pending')
          AND NOT EXISTS (SELECT 1 FROM notifications AS n
                          WHERE n.asset_id = a.id AND n.state IN ('pending', 'sending')))
           AS assets;

-- name: prune_cutoff
-- "Older than" in the database's time (the one clock every process shares).
SELECT coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s) AS before;
