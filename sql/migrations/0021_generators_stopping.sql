-- vidretry schema, version 21: a slot of [worker] max_running is free only when its
-- generator is gone.
-- kind: expand
--
-- A job that stops running without its worker (cancelled, or rescued after its lease ran
-- out) leaves its generator behind for a moment: the worker hears of it at its next
-- heartbeat, or gives the job up when its lease runs out, and stops it (SIGTERM, then
-- SIGKILL after a grace). Until then that generator still runs, and still takes a slot: a
-- row here from the moment its job left 'running' until its worker says the generator is
-- gone, or, should it never say (stopped, cut off, or of a release before 0.20.0, which
-- knows nothing of this), until "gone_by": the end of the lease it held, and a stop's grace
-- (vidretry_generator_gone_by). Claims under max_running count these rows with the running
-- jobs. Releases before 0.20.0 count only the running jobs, as they always did.
CREATE TABLE generators_stopping (
    lease_token uuid        PRIMARY KEY,  -- the lost attempt's: its worker names it when done
    asset_id    bigint      NOT NULL,
    owner       text        NOT NULL,     -- the worker that runs the generator
    gone_by     timestamptz NOT NULL
);
