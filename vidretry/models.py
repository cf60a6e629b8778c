"""States and the records passed between the database, the worker and the retry service."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from uuid import UUID

from vidretry.errors import ConfigError

MAX_ASSET_ID = 2**63 - 1  # bigint


def parse_asset_id(text: str) -> int:
    """The one rule for an asset id, wherever it is typed (the command line, an admin's
    /retry or /cancel): ASCII digits, 1 to 2^63-1. Anything else is ``ConfigError``."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MAX_ASSET_ID:
        return int(digits)
    shown = repr(text if len(text) <= 40 else text[:39] + "…")
    raise ConfigError(f"asset id must be a positive integer (at most {MAX_ASSET_ID}), got {shown}")


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AVAILABLE = "available"
    FAILED = "failed"
    CANCELLED = "cancelled"  # nobody waits for it any more, or an operator cancelled it


class RequestState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the user took it back, or the asset was cancelled


class NotificationKind(enum.StrEnum):
    FAILED = "failed"
    READY = "ready"
    ALERT = "alert"  # to an admin: a user used up their retries on a failed asset
    PAUSED = "paused"  # to an admin: the circuit breaker paused the queue (no asset)
    RESUMED = "resumed"  # to an admin: the pause that was announced ended (no asset)
    SET_ASIDE = "set_aside"  # to an admin: a notification kept crashing the notifier (no asset)
    CANCELLED = "cancelled"  # to a waiting user: an operator cancelled the asset
    STORE_DOWN = "store_down"  # to an admin: workers cannot keep finished videos (no asset)


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    SUPERSEDED = "superseded"  # a failure message made obsolete by a retry, never sent


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds a lease on. ``lease_token`` fences every change it makes."""

    id: int
    name: str
    params: dict[str, Any]
    attempts: int
    max_attempts: int
    retry_round: int
    lease_token: UUID
    # Claimed by the circuit breaker's probe while the queue is paused: its success resumes it.
    probe: bool = False

    @property
    def is_last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


@dataclass(frozen=True)
class JobContext:
    """What a generation handler is given about the job it runs."""

    asset_id: int
    name: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    retry_round: int
    output_dir: Path
    # The lease this attempt runs under: unique per attempt, usable as an idempotency key.
    lease_token: UUID
    # Where progress reports go (the worker writes them to the job at a bounded rate).
    report_progress: Callable[[float], None] = field(
        default=lambda fraction: None, repr=False, compare=False
    )

    def progress(self, fraction: float) -> None:
        """Report how far the generation is, from 0 to 1 (e.g. ``job.progress(0.4)``): the
        waiting Telegram users see it. As often as you like, from any thread; the worker
        writes the latest at most every ``[worker] progress_write_seconds``."""
        self.report_progress(fraction)

    @property
    def generation(self) -> int:
        """Deprecated since 0.20.0, removed in the next release: ``retry_round``, its old name
        (a handler written for 0.19.0 keeps working meanwhile, with a DeprecationWarning)."""
        warnings.warn(
            "JobContext.generation is deprecated: use JobContext.retry_round",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.retry_round

    @cached_property
    def output(self) -> Path:
        """Where the video goes: one file per asset and retry round, inside ``output_dir``.
        Computed on first use (most cheap handlers never ask)."""
        return self.output_dir / f"{self.asset_id}-g{self.retry_round}.mp4"
