"""How a worker or notifier names itself in leases, history and logs."""

import os
import socket


def default_process_name() -> str:
    """``host:pid``: unique among live processes, and says where to look."""
    return f"{socket.gethostname()}:{os.getpid()}"
