-- When the generator of an attempt whose job stopped running without its worker (cancelled,
-- rescued) is gone for sure, even if that worker never says so: the worker stops working on
-- the job by the end of the lease it holds (vidretry.queue.leases), then gives the generator
-- a grace of 1.5 s after SIGTERM before SIGKILL (vidretry.queue.handlers); a worker killed
-- meanwhile takes its generator with it, by the same signals and grace (handlers.lifeline);
-- this leaves twice that. Until then the generator holds a slot of [worker] max_running.
CREATE OR REPLACE FUNCTION vidretry_generator_gone_by(lease_expires_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT AS $$
SELECT lease_expires_at + interval '3 seconds';
$$;
