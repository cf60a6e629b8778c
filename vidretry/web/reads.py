"""What the console reads, the same for its pages, its JSON API and its live stream: the
overview, a search of the assets (a page at a time), and one asset with its history.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.models import JobState
from vidretry.queue import reports
from vidretry.web.answers import Refused
from vidretry.web.chart import outcomes_chart
from vidretry.web.params import int_param, like_prefix, path_id

PAGE_SIZE = 50


async def overview(pool: AsyncConnectionPool[Connection]) -> dict[str, Any]:
    async with pool.connection() as conn:
        status = await reports.status(conn, None)
        minutes = await fetch_all(conn, "outcomes_per_minute", {})
        facts = await fetch_one(conn, "console_facts", {})
    assert facts is not None
    queue = status["queue"]
    return {
        "counts": status["counts"],
        "available_estimated": status["available_estimated"],
        "failed_last_hour": status["failed_last_hour"],
        "outbox_waiting": status["outbox_backlog"],
        "outbox_dead": status["outbox_dead"],
        "paused": queue["state"] == "paused",
        "queue": queue,
        "order": status["order"],
        "pending_by_priority": status["pending_by_priority"],
        "rate_limited": status["rate_limited"],
        "generator": _generator(status["rate_limited"]),
        "store_down": _store_down(status["store_down"]),
        "leader": facts["leader"],
        "telegram": bool(facts["leader"]) and bool(facts["telegram"]),
        "leader_until": facts["leader_until"],
        "pruned_at": facts["pruned_at"],
        "pruned_by": facts["pruned_by"],
        "chart": outcomes_chart(minutes, facts["now"]),
        "releases": _releases(status["releases"]),
        "releases_warning": status["releases"]["warning"],
    }


async def search(pool: AsyncConnectionPool[Connection], request: Request) -> dict[str, Any]:
    """The assets a request's ``state``, ``q`` (a name's beginning, or digits: that asset and
    that Telegram user's) and ``before`` (the page after) select."""
    state = request.query_params.get("state") or None
    if state is not None and state not in set(JobState):
        raise Refused(400, f"unknown state {state[:20]!r}")
    q = (request.query_params.get("q") or "").strip()[:200]
    before = int_param(request, "before")
    params: dict[str, Any] = {
        "state": state, "before": before, "prefix": None, "limit": PAGE_SIZE,
    }  # fmt: skip
    exact = None
    async with pool.connection() as conn:
        if q.isascii() and q.isdigit() and len(q) <= 19:
            # Digits: that asset, and the assets that Telegram user asked for.
            if before is None:
                exact = await fetch_one(conn, "show_asset", {"id": int(q)})
            found = await fetch_all(conn, "assets_of_user", {**params, "user_id": int(q)})
        else:
            params["prefix"] = like_prefix(q) if q else None
            found = await fetch_all(conn, "search_assets", params)
        rows = [reports.with_old_names(r) for r in found]
    if exact is not None and all(r["id"] != exact["id"] for r in rows):
        rows.insert(0, _asset_row(exact))
    more = None
    if len(rows) >= PAGE_SIZE:
        more = urlencode(
            {k: v for k, v in (("state", state), ("q", q), ("before", rows[-1]["id"])) if v}
        )
    return {"assets": rows, "state": state, "q": q, "more": more}


async def asset(pool: AsyncConnectionPool[Connection], request: Request) -> dict[str, Any]:
    """The asset the request's path names, as ``vidretry show`` shows it."""
    asset_id = path_id(request)
    async with pool.connection() as conn:
        found = await reports.show_asset(conn, asset_id)
    if found is None:
        raise Refused(404, f"asset {asset_id} not found")
    return found


def _asset_row(found: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "state", "attempts", "max_attempts", "retry_round", "last_error",
            "updated_at")  # fmt: skip
    return reports.with_old_names({k: found[k] for k in keys})


def _store_down(outage: dict[str, Any] | None) -> dict[str, str] | None:
    """An outage of the video store as the overview says it: since when, and why."""
    if outage is None:
        return None
    return {"since": outage["since"].astimezone(UTC).strftime("%H:%M:%S UTC"),
            "why": str(outage["why"])}  # fmt: skip


def _releases(about: dict[str, Any]) -> str:
    """The releases that run, as the overview says it: "0.20.0: 2 workers, 1 notifier"."""
    shown = [f"{entry['release']}: {reports.processes(entry)}" for entry in about["running"]]
    return " · ".join(shown) or "none recorded"


def _generator(rate_limited: dict[str, Any] | None) -> str:
    """The generator as the overview says it: free to start jobs, or told to slow down."""
    if rate_limited is None:
        return "starting jobs"
    return f"rate limited until {rate_limited['until'].astimezone(UTC).strftime('%H:%M:%S UTC')}"
