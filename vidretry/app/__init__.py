"""The processes, assembled from the packages below: ``daemons`` wires ``vidretry worker``
and ``vidretry notifier`` (pool, listener, signals, metrics, logging), ``demo`` the guided
run, ``doctor`` the checks of a deployment.

May import: ``telegram``, ``queue``, ``db`` and the shared vocabulary; never ``cli``, and
never typer or rich (``.importlinter`` checks it).
"""
