"""Connections that notice a dead link: a path to PostgreSQL that died without a FIN or an
RST (a dead NAT entry, a failed load balancer, a failover that drops packets).

Such a connection stays "open": a query on it waits for an answer that never comes, for the
15 minutes the kernel retransmits, and an idle one (LISTEN) is never told at all. Two guards:

- **In the kernel** (``dead_link_params``): TCP keepalives and ``tcp_user_timeout`` sized
  to the process's answer time, unless the URL sets them. They act on a real network only;
  libpq ignores them on a unix socket.
- **In the process** (``WatchedConnection``): every statement that gets no answer within
  ``answer_seconds`` has its socket shut down, so the wait ends at once with ``NoAnswer``
  (an ``OperationalError``, transient like any lost connection) and the pool discards the
  connection. It also catches what the kernel cannot see: a proxy or a pooler between us
  and the server that accepts our bytes and forwards nothing.

Every state change is fenced by a lease token or a state guard, so a statement that did
reach the server before the link died and is then retried changes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import psycopg
from psycopg.abc import RV, PQGen
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow


class NoAnswer(psycopg.OperationalError):
    """The database did not answer a statement in time; the connection was closed."""


# What a daemon allows a statement when its lease does not say (``answer_seconds_for``).
ANSWER_SECONDS = 10.0


def answer_seconds_for(lease_seconds: float) -> float:
    """How long a daemon waits for any statement: a third of its lease, 2 to 10 s.

    A third leaves a heartbeat time to find a dead connection and try again on a new one
    before the lease runs out; 2 s is far above any statement vidretry runs on a healthy
    server (they take milliseconds), and 10 s is a long stall for a queue."""
    return min(ANSWER_SECONDS, max(2.0, lease_seconds / 3))


def dead_link_params(url: str, answer_seconds: float) -> dict[str, Any]:
    """Connection parameters that let the kernel find a dead link too, for those the URL
    leaves out (a URL's own ``keepalives_idle=…`` or ``tcp_user_timeout=…`` wins).

    An idle connection is probed after ``answer_seconds`` of silence, then every third of
    it, and given up after three probes unanswered; data unacknowledged for
    ``answer_seconds`` ends the connection."""
    seconds = max(1, round(answer_seconds))
    wanted: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": max(1, seconds // 3),
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
    }
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}  # connect() will say what is wrong with the URL
    return {key: value for key, value in wanted.items() if key not in given}


class WatchedConnection(psycopg.AsyncConnection[DictRow]):
    """An async connection whose statements get ``answer_seconds`` to be answered (None:
    forever). Waits for notifications (``notifies(timeout=…)``) are not statements: they
    are bounded by their own timeout and never watched."""

    answer_seconds: float | None = None
    _severed = False

    async def wait(
        self,
        gen: PQGen[RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg's signature)
    ) -> RV:
        if self.answer_seconds is None or timeout is not None:
            return await super().wait(gen, interval, timeout)
        watchdog = asyncio.get_running_loop().call_later(self.answer_seconds, self._sever)
        try:
            return await super().wait(gen, interval, timeout)
        except psycopg.OperationalError:
            if self._severed:
                raise NoAnswer(
                    f"no answer from the database within {self.answer_seconds:g}s "
                    "(a dead link?): connection closed"
                ) from None
            raise
        finally:
            watchdog.cancel()

    def _sever(self) -> None:
        """Shut the socket down: the pending read sees end-of-file at once, libpq marks the
        connection bad, and the pool throws it away. (Closing the descriptor instead would
        leave the event loop watching a number that may be reused.)"""
        self._severed = True
        with (
            contextlib.suppress(OSError, psycopg.Error),
            socket.socket(fileno=os.dup(self.pgconn.socket)) as sock,
        ):
            sock.shutdown(socket.SHUT_RDWR)
