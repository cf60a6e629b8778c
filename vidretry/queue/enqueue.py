"""Asking for a video: create the asset for a name or join the existing one."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from vidretry.db.connection import Connection, fetch_one
from vidretry.errors import ConfigError
from vidretry.models import JobState
from vidretry.queue.retry import Actor

# What the unique index on names can always hold (sql/migrations/0004_names_fit_their_index.sql).
MAX_NAME_BYTES = 2000
NAME_RULE = f"1 to {MAX_NAME_BYTES} bytes of UTF-8, not only spaces, no control characters"
# Telegram's user ids are positive and have at most 52 significant bits; chat ids of groups
# and channels are negative (-100… for channels), all well inside 53 bits.
MAX_TELEGRAM_ID = 2**53 - 1


def normalise_name(text: str) -> str:
    """The one rule for a video's name, whoever asks (CLI, bot, Python API): surrounding
    whitespace goes; what is left must be ``NAME_RULE``, else ``ConfigError``."""
    name = text.strip()
    size = len(name.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAME_BYTES or any(
        unicodedata.category(c) in ("Cc", "Cs") for c in name
    ):
        raise ConfigError(f"asset name must be {NAME_RULE}, got {_shown(text)} ({size} bytes)")
    return name


def check_ids(user_id: int, chat_id: int | None) -> None:
    """A Telegram user id is positive and within Telegram's range; a chat id may be negative
    (a group) but not 0. ``ConfigError`` names the one that is not."""
    if not 1 <= user_id <= MAX_TELEGRAM_ID:
        raise ConfigError(
            f"user id must be a positive Telegram user id (1 to {MAX_TELEGRAM_ID}), got {user_id}"
            + (" (a group's chat id goes in --chat)" if user_id < 0 else "")
        )
    if chat_id is not None and not (chat_id != 0 and abs(chat_id) <= MAX_TELEGRAM_ID):
        raise ConfigError(
            f"chat id must be a Telegram chat id (not 0, at most 53 bits), got {chat_id}"
        )


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


# Priorities: 0 (the default) to 9, higher first. Fairness applies within a priority.
MAX_PRIORITY = 9


def check_priority(priority: int) -> None:
    if isinstance(priority, bool) or not 0 <= priority <= MAX_PRIORITY:
        raise ConfigError(
            f"priority must be an integer from 0 to {MAX_PRIORITY} (higher first), got {priority}"
        )


@dataclass(frozen=True)
class Enqueued:
    asset_id: int
    state: JobState
    created: bool
    retried: bool = False  # the asset had failed and was put back in the queue for this user
    ready_queued: bool = False  # it was available: a 'ready' message is on its way
    # It had failed, and the user's retries for today are used up: it stays failed, nothing
    # is recorded for the user, and the admins are told (the retry button's rule and alert).
    out_of_retries: bool = False


async def enqueue(
    conn: Connection,
    name: str,
    *,
    user_id: int | None,
    chat_id: int | None = None,
    params: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    asked_by: str = "api",
    now: datetime | None = None,
) -> Enqueued:
    """Record that ``user_id`` wants the video ``name``; return the asset and its state.

    A new name creates a pending job (and wakes the workers at commit) owned by
    ``user_id``, at ``priority`` (0-9, higher first) and in its owner's fair turn. A second
    user for the same name joins the same asset (a higher ``priority`` lifts the job). For
    an asset that is already available the request is satisfied at once with a 'ready'
    notification; for a failed one the asset is retried with this user as the actor, within
    the user's daily retry quota (``out_of_retries``, the admins told, when it is used up);
    a cancelled one is re-opened in a new retry round. ``chat_id`` defaults to the user's
    private chat, whose id is the user id. ``max_attempts`` None: the workers'
    ``[worker] max_attempts``, as they wrote it at start.

    With ``user_id`` None nobody is recorded as waiting (nobody will be told): the job is
    its own owner, and ``asked_by`` is who asked, as the history records them (e.g.
    ``operator:alice``, ``web:alice``).
    The name is normalised by ``normalise_name``; a bad name, id or priority is
    ``ConfigError``, before the database is asked. Runs in the caller's transaction when
    there is one: one statement, the function ``vidretry_enqueue_request_v2``, which holds
    every rule of it and which other programs call through ``vidretry_enqueue``.
    """
    name = normalise_name(name)
    check_priority(priority)
    if user_id is not None:
        check_ids(user_id, chat_id)
    elif chat_id is not None:
        raise ConfigError("a chat id needs the user id of the requester (--user)")
    actor = asked_by if user_id is None else Actor.telegram(user_id).label
    row = await fetch_one(
        conn,
        "enqueue_request",
        {
            "name": name, "user_id": user_id, "chat_id": chat_id, "params": Jsonb(params or {}),
            "priority": priority, "max_attempts": max_attempts, "actor": actor,
            "now": now,
        },
    )  # fmt: skip
    assert row is not None  # the function always returns its row
    return Enqueued(
        row["asset_id"], JobState(row["state"]), row["created"], row["retried"],
        row["ready_queued"], row["out_of_retries"],
    )  # fmt: skip
