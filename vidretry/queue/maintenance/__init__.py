"""The queue's periodic jobs, one module each, as River keeps its maintenance services and
Oban its plugins. Each is an object with ``run_once`` (or its one step), which the tests call
directly and its process calls on its schedule: rescuing jobs whose lease ran out
(``rescue_jobs``) and notifications stuck in sending (``rescue_notifications``), deleting
old history (``retention``), probing a paused queue (``breaker_probe``) and watching the
video store's outages (``store_outage``).
"""
