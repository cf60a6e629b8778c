-- vidretry schema, version 20: which releases run, and a leader's hand-over without a wait.
-- kind: expand
--
-- Each worker, notifier and web console records itself here while it runs: its release, when
-- it started, and when it was last seen (it says so every 30 s and deletes its row when it
-- stops). `status`, the console and `doctor` show which releases run and warn when a mix
-- of them outlives a rollout (docs/upgrading.md). Releases before 0.20.0 record nothing.
CREATE TABLE vidretry_processes (
    role       text        NOT NULL CHECK (role IN ('worker', 'notifier', 'web')),
    name       text        NOT NULL,  -- host:pid, as in leases, leadership and the logs
    release    text        NOT NULL CHECK (release ~ '^\d+\.\d+\.\d+$'),
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    PRIMARY KEY (role, name)
);

-- A leader that resigns (a notifier stopped by SIGTERM, as in a rollout) says so on
-- vidretry_leadership, so a standby takes over at once instead of at its next look. A
-- trigger, so the resignations of releases that know nothing of it are heard too.
CREATE FUNCTION leadership_vacated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vidretry_leadership', NEW.role);
    RETURN NULL;
END;
$$;
CREATE TRIGGER leadership_vacated
    AFTER UPDATE OF leader ON leadership
    FOR EACH ROW WHEN (OLD.leader IS NOT NULL AND NEW.leader IS NULL)
    EXECUTE FUNCTION leadership_vacated();
