"""The queue: a video's life from enqueue to done or failed for good, with no Telegram in it.

How a job is claimed: the claim loop (``claim_loop``, shared by the worker and the notifier)
asks ``jobs`` for the next jobs in the fair order (``claim_jobs`` in sql/queries/jobs.sql),
within the global quotas (``quota``), and the ``worker`` runs each under a lease (``leases``).

Owns enqueueing and the fair order's turns (``enqueue``), the job transitions and the claim
(``jobs``), the global quotas (``quota``), the claim loop (``claim_loop``), the worker and its
leases (``worker``, ``leases``), outcomes written in batches (``groupcommit``), the
generators (``handlers``) and their progress reports (``progress``), the circuit breaker
(``breaker``), the retry service (``retry``), cancelling (``cancel``), the API for a bot with
its own framework (``interface``), the periodic jobs (``maintenance``: rescue, retention,
the breaker's probe, the video store's outage watch), status reports (``reports``) and
Prometheus metrics (``metrics``).

May import: ``vidretry.results``, ``vidretry.db`` and the shared vocabulary. Never
``telegram``, ``app`` or ``cli``, not even indirectly; never Telethon, typer or rich
(``.importlinter`` checks it). The final-failure transaction writes outbox rows in SQL;
reading them is ``telegram.outbox``.
"""
