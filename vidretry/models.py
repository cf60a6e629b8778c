"""States and the records passed between the store, the worker and the retry service."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AVAILABLE = "available"
    FAILED = "failed"


class RequestState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class NotificationKind(enum.StrEnum):
    FAILED = "failed"
    READY = "ready"


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds a lease on. ``lease_token`` fences every change it makes."""

    id: int
    name: str
    params: dict[str, Any]
    attempts: int
    max_attempts: int
    generation: int
    lease_token: UUID
    lease_expires_at: datetime

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
    generation: int
    output: Path
    # The lease this attempt runs under: unique per attempt, usable as an idempotency key.
    lease_token: UUID
