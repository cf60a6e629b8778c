"""Read-only views of the queue for `status`, `list` and `show`, as plain JSON-ready dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vidretry.db import schema
from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.models import JobState
from vidretry.queue import breaker
from vidretry.version import Release, parse_release

# A mix of releases is a rollout under way (docs/upgrading.md: workers one machine at a time,
# each finishing its running videos within [worker] shutdown_grace_seconds). One that lasts
# longer than this was left half done: status, the console and doctor warn.
MIXED_RELEASES_WARN_SECONDS = 3600
# The processes of releases before 0.20.0, which record nothing: seen by their leases and
# the notifiers' leadership alone.
UNRECORDED = "0.19.0 or older"
# The JSON output (`list` and `show --json`, the console's API) names the retry round
# "retry_round"; beside it, for one release (0.20.0), its old name "generation" with the same
# value, which goes in the next release (docs/operations.md).
OLD_NAMES = {"retry_round": "generation"}


async def status(conn: Connection, now: datetime | None) -> dict[str, Any]:
    row = await fetch_one(conn, "state_counts", {})
    assert row is not None
    counts = {state.value: row[state.value] for state in JobState}
    summary = await fetch_one(conn, "queue_summary", {"now": now})
    assert summary is not None
    shape = await fetch_one(conn, "queue_shape", {"now": now})
    assert shape is not None
    return {
        "counts": counts,
        # Beyond 100,000 assets the available ones are estimated (sql/queries/status.sql).
        "available_estimated": row["available_estimated"],
        **summary,
        "queue": await breaker.state(conn),
        "order": "fair" if shape["fair"] else "first come, first served",
        # Pending jobs by priority, highest first (a JSON object's keys are strings and
        # come in no useful order).
        "pending_by_priority": dict(
            sorted(((int(p), n) for p, n in shape["pending_by_priority"].items()), reverse=True)
        ),
        "rate_limited": (
            None
            if shape["rate_limited_until"] is None
            else {"until": shape["rate_limited_until"], "why": shape["rate_limited_why"]}
        ),
        "starts_last_minute": shape["starts_last_minute"],
        # Workers cannot keep finished videos: they hold them and try again.
        "store_down": (
            None
            if shape["store_down_since"] is None
            else {"since": shape["store_down_since"], "why": shape["store_down_why"]}
        ),
        "releases": await releases(conn, now),
    }


async def releases(conn: Connection, now: datetime | None) -> dict[str, Any]:
    """Which releases run (workers, notifiers, web consoles of each), the schema, and a
    warning when a mix of releases has run for longer than a rollout takes."""
    running: dict[str, dict[str, Any]] = {}
    clock = None
    for row in await fetch_all(conn, "running_releases", {"now": now}):
        entry = running.setdefault(
            row["release"], {"release": row["release"], "since": row["since"], "unrecorded": []}
        )
        entry[_plural(row["role"])] = row["processes"]
        entry["since"] = min(entry["since"], row["since"])
        clock = row["now"]
    recorded_since = [entry["since"] for entry in running.values()]
    for row in await fetch_all(conn, "unrecorded_processes", {"now": now}):
        entry = running.setdefault(
            UNRECORDED, {"release": UNRECORDED, "since": None, "unrecorded": []}
        )
        entry[_plural(row["role"])] = entry.get(_plural(row["role"]), 0) + 1
        entry["unrecorded"].append(f"{row['role']} {row['name']}")
    for entry in running.values():
        for role in ("workers", "notifiers", "web"):
            entry.setdefault(role, 0)
    ordered = sorted(running.values(), key=_oldest_first)
    # The mix began when the newest of the recorded releases started its first process.
    mixed_since = max(recorded_since) if len(running) > 1 and recorded_since else None
    warning = None
    if mixed_since is not None and clock is not None:
        seconds = (clock - mixed_since).total_seconds()
        if seconds > MIXED_RELEASES_WARN_SECONDS:
            names = " and ".join(entry["release"] for entry in ordered)
            warning = (
                f"releases {names} have run side by side for {_duration(seconds)}: finish "
                "the rollout, or roll back (docs/upgrading.md)"
            )
    return {
        "schema": await schema.summary(conn),
        "running": ordered,
        "mixed_since": mixed_since,
        "warning": warning,
    }


def _oldest_first(entry: dict[str, Any]) -> tuple[int, Release]:
    if entry["release"] == UNRECORDED:
        return (0, (0, 0, 0))
    return (1, parse_release(entry["release"]))


def processes(entry: dict[str, Any]) -> str:
    """How many processes of a release ``releases`` found, as people say it: "2 workers,
    1 notifier" (none of a kind: not said)."""
    return ", ".join(
        f"{n} {role[:-1] if n == 1 and role != 'web' else role}"
        for role in ("workers", "notifiers", "web")
        if (n := entry[role])
    )


def _plural(role: str) -> str:
    return "web" if role == "web" else f"{role}s"


def _duration(seconds: float) -> str:
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def with_old_names(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the JSON output gives it: each renamed field under its old name too."""
    found = dict(row)
    for new, old in OLD_NAMES.items():
        if new in found:
            found[old] = found[new]
    return found


async def list_assets(conn: Connection, state: JobState | None, limit: int) -> list[dict[str, Any]]:
    found = await fetch_all(conn, "list_assets", {"state": state, "limit": limit})
    return [with_old_names(row) for row in found]


async def show_asset(conn: Connection, asset_id: int) -> dict[str, Any] | None:
    """The asset with its requests, notifications and event history; None if unknown."""
    asset = await fetch_one(conn, "show_asset", {"id": asset_id})
    if asset is None:
        return None
    params = {"id": asset_id}
    notifications = await fetch_all(conn, "asset_notifications", params)
    return {
        **with_old_names(asset),
        "requests": [dict(r) for r in await fetch_all(conn, "asset_requests", params)],
        "notifications": [with_old_names(r) for r in notifications],
        "events": [with_old_names(r) for r in await fetch_all(conn, "asset_events", params)],
    }


async def running_jobs(
    conn: Connection, now: datetime | None, limit: int = 50
) -> list[dict[str, Any]]:
    return [dict(r) for r in await fetch_all(conn, "running_jobs", {"now": now, "limit": limit})]


@dataclass(frozen=True)
class Place:
    """Where a pending job is in line, and about how long it will wait."""

    place: int  # 1: the next to be claimed
    minutes: int | None  # None: nothing to go by (no recent attempts, or no worker busy)


async def place_in_line(conn: Connection, asset_id: int) -> Place | None:
    """The place of a pending asset among the jobs claimed before it, and an expected wait:
    the rounds of the workers busy now it takes to reach it, each the median of the recent
    attempts. None when the asset is not pending."""
    row = await fetch_one(conn, "place_in_line", {"id": asset_id})
    if row is None:
        return None
    place, running, median = row["place"], row["running"], row["median_seconds"]
    if not running or median is None:
        return Place(place, None)
    rounds = math.ceil(place / running)
    return Place(place, max(1, math.ceil(rounds * float(median) / 60)))
