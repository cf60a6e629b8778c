"""The global quotas on the generator: how many jobs may run at once across every worker
(``[worker] max_running``), and how many may start in any 60 seconds
(``[worker] max_starts_per_minute``).

Both are enforced in PostgreSQL when a job is claimed (``claim_jobs``, which claims the
breaker's probes too), so they hold across machines and through crashes. Claims under a quota
take turns on one advisory lock (``lock_quota``), and the claim that follows it counts in a
snapshot taken after the last claim committed: the count is exact. It counts the running
jobs, and the generators still being stopped for jobs that stopped running without their
worker (cancelled, rescued: ``generators_stopping``, schema 21) until the worker says they
are gone (``jobs.generator_gone``) or, if it never does, a stop's grace after their lease.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quota:
    """0 is no limit."""

    max_running: int = 0
    max_starts_per_minute: int = 0

    @property
    def limited(self) -> bool:
        return self.max_running > 0 or self.max_starts_per_minute > 0

    def params(self) -> dict[str, int]:
        return {"max_running": self.max_running, "max_starts": self.max_starts_per_minute}


NO_QUOTA = Quota()
