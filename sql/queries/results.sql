-- Named statements for keeping videos (vidretry/queue/worker.py) and letting them go
-- (vidretry/telegram/notifier.py, vidretry/queue/maintenance/retention.py). Like jobs.sql:
-- a "now" parameter that is NULL means the database's now().

-- name: note_store_outage_and_queue_notices
-- A worker could not keep a finished video: the store is unreachable (it keeps the video and
-- tries again). The outage is one row, from its first failure until any worker's next
-- success (complete_jobs, jobs.sql); once it has lasted
-- "alert_after" seconds, one worker flips "told" and each admin gets one 'store_down'
-- notice (generation: the outage's own number, schema 22, so one per outage).
WITH noted AS (
    INSERT INTO store_outage (since, by, detail)
    VALUES (coalesce(%(now)s::timestamptz, now()), %(owner)s, %(detail)s)
    ON CONFLICT (id) DO NOTHING
),
telling AS (
    UPDATE store_outage
    SET told = true
    WHERE id AND NOT told
      AND since <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(alert_after)s)
    RETURNING since, detail, number
),
queued AS (
    INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,
                               next_attempt_at, created_at, updated_at)
    SELECT NULL, admin, admin, 'store_down', telling.number,
           jsonb_build_object('since', telling.since, 'error', telling.detail,
                              'waiting', (SELECT count(*) FROM video_assets
                                          WHERE state = 'running')),
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
           coalesce(%(now)s::timestamptz, now())
    FROM telling CROSS JOIN unnest(%(admins)s::bigint[]) AS admin
    ON CONFLICT (user_id, kind, generation) WHERE asset_id IS NULL DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued,
       CASE WHEN count(*) > 0 THEN pg_notify('vidretry_outbox', '') END AS notified
FROM queued;

-- name: delivered_video_to_delete
-- [storage] delete_after_delivery: once no 'ready' message of a retry round's video waits and
-- Telegram holds the video (its reference is stored), mark the object deleted — exactly
-- once, by whoever gets here first — and return its URI to delete. "result" is the URI the
-- notifier found to be one vidretry kept (never a bare path of before schema 19): only
-- that one is marked.
UPDATE video_assets AS a
SET result_deleted_at = coalesce(%(now)s::timestamptz, now())
WHERE a.id = %(id)s AND a.generation = %(retry_round)s AND a.state = 'available'
  AND a.result = %(result)s AND a.result_deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM telegram_videos AS v
              WHERE v.asset_id = a.id AND v.generation = a.generation)
  AND NOT EXISTS (SELECT 1 FROM notifications AS n
                  WHERE n.asset_id = a.id AND n.generation = a.generation AND n.kind = 'ready'
                    AND n.state IN ('pending', 'sending'))
RETURNING a.result;
