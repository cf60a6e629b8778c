-- The place of a pending asset among the jobs a worker will claim before it (claim_jobs'
-- order: higher priority, then retried jobs, then by turn, due time and id), how many run
-- now, and the median of the last 50 attempts' durations (claim to outcome): what the bot
-- says about the wait. No row for an asset that is not pending. Jobs enqueued later may
-- still come before it (a user's first job goes before another user's backlog): the place
-- is where it stands now.
--
-- PL/pgSQL for its plan, kept for the session: a SQL function with a pinned search path is
-- no longer inlined, and was planned again at every call (about six times the cost).
CREATE OR REPLACE FUNCTION vidretry_place_in_line(asset_id bigint)
RETURNS TABLE (place bigint, running bigint, median_seconds float8)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH me AS (
    SELECT v.id, v.priority, v.generation, v.turn, v.run_at FROM video_assets AS v
    WHERE v.id = vidretry_place_in_line.asset_id AND v.state = 'pending'
),
ahead AS (
    -- Two ranges of the claim index: every higher priority, and the jobs before this one
    -- within its own.
    SELECT (SELECT count(*) FROM video_assets AS a, me
            WHERE a.state = 'pending' AND a.priority > me.priority)
           + (SELECT count(*) FROM video_assets AS a, me
              WHERE a.state = 'pending' AND a.priority = me.priority
                AND ((a.generation = 0), a.turn, a.run_at, a.id)
                    < ((me.generation = 0), me.turn, me.run_at, me.id)) AS n
),
now_running AS (
    SELECT count(*) AS n FROM video_assets AS v WHERE v.state = 'running'
),
finished AS (
    -- The newest outcomes, through the primary key backwards; each with its claim.
    SELECT e.asset_id, e.generation, e.attempt, e.created_at
    FROM job_events AS e
    WHERE e.kind IN ('succeeded', 'attempt_failed')
    ORDER BY e.id DESC
    LIMIT 50
),
durations AS (
    SELECT extract(epoch FROM f.created_at - c.created_at) AS seconds
    FROM finished AS f
    JOIN LATERAL (
        SELECT e.created_at FROM job_events AS e
        WHERE e.asset_id = f.asset_id AND e.generation = f.generation
          AND e.attempt = f.attempt AND e.kind = 'claimed'
        ORDER BY e.id DESC
        LIMIT 1
    ) AS c ON true
)
SELECT ahead.n + 1, now_running.n,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d.seconds) FROM durations AS d)::float8
FROM me, ahead, now_running;
END;
$$;
