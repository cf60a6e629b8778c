"""Rich renderables for the command line: the demo's live view, the tables of ``list`` and
``show``, the lines of ``doctor``. The core hands over plain data; this draws it. (The status
dashboard is drawn without rich, for a fast start: ``vidretry.cli.plain``.)"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the demo (and the daemons it runs) load only for `vidretry demo`
    from vidretry.app.demo import Snapshot
    from vidretry.queue.maintenance.retention import Counts


STATE_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "available": "green",
    "failed": "red",
    "cancelled": "dim",
}


def state(name: str) -> Text:
    return Text(name, style=STATE_STYLE.get(name, ""))


def demo(snapshot: Snapshot) -> RenderableType:
    assets = Table("asset", "state", "attempts", "retry round", "last error", expand=True)
    for row in snapshot.assets:
        assets.add_row(
            escape(row["name"]),
            state(row["state"]),
            f"{row['attempts']}/{row['max_attempts']}",
            str(row["retry_round"]),
            escape((row["last_error"] or "")[:40]),
        )
    outbox = snapshot.outbox
    messages = Text("\n".join(snapshot.messages) or "(nothing sent yet)")
    return Group(
        Panel(Text(snapshot.phase, style="bold"), title="vidretry demo"),
        assets,
        Panel(
            messages,
            title=f"Telegram (console transport): {outbox.get('sent', 0)} sent, "
            f"{outbox.get('waiting', 0)} waiting, {outbox.get('dead', 0)} dead",
        ),
    )


def assets(rows: list[dict[str, Any]]) -> Table:
    """``vidretry list``."""
    table = folding_table("id", "name", "state", "prio", "attempts", "round", "last error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            escape(row["name"]),
            row["state"],
            str(row["priority"]),
            f"{row['attempts']}/{row['max_attempts']}",
            str(row["retry_round"]),
            escape((row["last_error"] or "")[:60]),
        )
    return table


def asset(details: dict[str, Any]) -> RenderableType:
    """``vidretry show``: one asset with its requests, notifications and history."""
    lines = [
        f"asset {details['id']} [bold]{escape(details['name'])}[/]: {details['state']}, "
        f"attempt {details['attempts']}/{details['max_attempts']}, "
        f"retry round {details['retry_round']}",
        f"priority {details['priority']}, turn {details['turn']}, owner "
        + (f"telegram:{details['owner']}" if details["owner"] is not None else "itself"),
    ]
    if details["last_error"]:
        lines.append(f"last error: {escape(details['last_error'])}")
    if details["result"]:
        lines.append(f"result: {escape(details['result'])}")
        recorded = [
            *([f"{details['result_size']:,} bytes"] if details["result_size"] is not None else []),
            *([f"SHA-256 {details['result_sha256']}"] if details["result_sha256"] else []),
            *(
                [f"deleted from the store {_cell(details['result_deleted_at'])}"]
                if details["result_deleted_at"]
                else []
            ),
        ]
        if recorded:
            lines.append("        " + ", ".join(recorded))
    parts: list[RenderableType] = [Text.from_markup("\n".join(lines))]
    for title, rows, columns in (
        ("requests", details["requests"], ("user_id", "chat_id", "state")),
        (
            "notifications",
            details["notifications"],
            ("user_id", "kind", "round", "state", "attempts", "last_error"),
        ),
        (
            "events",
            details["events"],
            ("at", "kind", "round", "attempt", "actor", "detail"),
        ),
    ):
        table = folding_table(*columns, title=title)
        for row in rows:
            table.add_row(*(escape(_cell(row[_FIELD.get(c, c)])) for c in columns))
        parts.append(table)
    return Group(*parts)


# Columns of free text: they take the squeeze in a narrow terminal, wrapping onto more lines.
FREE_TEXT = frozenset({"name", "last_error", "last error", "detail", "at"})


def folding_table(*columns: str, title: str | None = None) -> Table:
    """A table that fits a narrow terminal (80 columns) without cutting what tells rows
    apart: ids, kinds, states and actors keep their whole text (`telegram:111` and
    `telegram:222` stay two users); free text wraps, and nothing ends in "…"."""
    table = Table(title=title)
    for column in columns:
        if column in FREE_TEXT:
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, no_wrap=True, overflow="fold")
    return table


# Short headers for the fields they show.
_FIELD = {"round": "retry_round", "at": "created_at"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


DOCTOR_MARKS = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


def check(name: str, verdict: str, detail: str) -> str:
    """One line of ``vidretry doctor``."""
    return f"{DOCTOR_MARKS[verdict]} {name:<9} {escape(detail)}"


def pruned(counts: Counts) -> str:
    """What ``db prune`` deleted (or would)."""
    videos = f" and {counts.videos} stored video(s)" if counts.videos else ""
    return (
        f"{counts.events} history event(s), {counts.notifications} notification(s)"
        f", {counts.assets} asset(s){videos}"
    )
