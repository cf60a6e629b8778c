"""The queue: a video's life from enqueue to done or failed for good, with no Telegram in it.

Owns enqueueing and the fair order's turns (``enqueue``), the job transitions and the claim
(``jobs``), the global quotas (``quota``), the claim loop shared by the worker and the
notifier (``loop``), the worker and its leases (``worker``, ``leases``, ``groupcommit``), the
generators (``handlers``), the circuit breaker (``breaker``), the retry service (``retry``),
retention (``retention``), status reports (``reports``) and Prometheus metrics
(``metrics``).

May import: ``vidretry.db`` and the shared vocabulary. Never ``telegram``, ``app`` or
``cli``, not even indirectly; never Telethon, typer or rich (``.importlinter`` checks it).
The final-failure transaction writes outbox rows in SQL; reading them is ``telegram.outbox``.
"""
