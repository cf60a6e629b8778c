-- Named statements of the record of running processes (vidretry/db/processes.py; schema
-- 20): which releases run, for `status`, the console and `doctor` (docs/upgrading.md).
-- Like jobs.sql: a "now" parameter that is NULL means the database's now().

-- name: record_process
-- A worker, notifier or web console says it runs, and which release it is: at start (no
-- started_at yet: now) and every 30 s after. A row pruned while the process was cut off
-- from the database comes back with its first start.
INSERT INTO vidretry_processes AS p (role, name, release, started_at, seen_at)
VALUES (%(role)s, %(name)s, %(release)s,
        coalesce(%(started_at)s::timestamptz, %(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (role, name) DO UPDATE
SET release = excluded.release, started_at = excluded.started_at, seen_at = excluded.seen_at
RETURNING p.started_at;

-- name: forget_process
-- The process stops: it is not running any more.
DELETE FROM vidretry_processes WHERE role = %(role)s AND name = %(name)s;

-- name: forget_lost_processes
-- Processes not seen for ten minutes died without a word (SIGKILL, a lost machine).
DELETE FROM vidretry_processes
WHERE seen_at < coalesce(%(now)s::timestamptz, now()) - interval '10 minutes';

-- name: running_releases
-- The processes seen in the last two minutes (four of their 30 s reports), by release and
-- role; "since" is when the first of them started.
SELECT release, role, count(*) AS processes, min(started_at) AS since,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM vidretry_processes
WHERE seen_at > coalesce(%(now)s::timestamptz, now()) - interval '2 minutes'
GROUP BY release, role
ORDER BY release, role;

-- name: unrecorded_processes
-- Releases before 0.20.0 record nothing: the workers holding a lease and the notifiers'
-- leader that are not recorded are theirs (an idle one of them cannot be seen).
SELECT 'worker' AS role, a.lease_owner AS name
FROM video_assets AS a
WHERE a.state = 'running' AND a.lease_expires_at > coalesce(%(now)s::timestamptz, now())
  AND NOT EXISTS (SELECT 1 FROM vidretry_processes AS p
                  WHERE p.role = 'worker' AND p.name = a.lease_owner)
UNION
SELECT 'notifier', l.leader
FROM leadership AS l
WHERE l.leader IS NOT NULL AND l.expires_at > coalesce(%(now)s::timestamptz, now())
  AND NOT EXISTS (SELECT 1 FROM vidretry_processes AS p
                  WHERE p.role = 'notifier' AND p.name = l.leader)
ORDER BY 1, 2;

-- name: running_processes
-- Each process seen in the last two minutes, with its release: `db upgrade` applies no
-- contract step while one of a release it breaks runs.
SELECT role, name, release
FROM vidretry_processes
WHERE seen_at > coalesce(%(now)s::timestamptz, now()) - interval '2 minutes'
ORDER BY role, name;
