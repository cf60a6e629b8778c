"""Time is passed in, never read behind the caller's back.

A clock returns ``None`` to mean "the database's ``now()``": every SQL statement takes
``coalesce(%(now)s, now())``, so all workers on all machines share Postgres's clock. Tests pass
a clock that returns fixed times and move it by hand.
"""

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime | None:
        """The current time for SQL, or ``None`` for the database server's time."""
        ...


class DatabaseClock:
    """Production clock: defer to the database server, one time source for every process."""

    def now(self) -> datetime | None:
        return None
