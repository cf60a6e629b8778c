"""The status dashboard as plain text, without rich.

`vidretry status` is the command operators run most (in loops, in scripts, over ssh), and
loading rich was a third of what it cost beyond Python, psycopg and typer themselves
(bench/RESULTS.md, "Command start"). This draws the same tables in the same box style,
with the same rules as ``views.folding_table``: the table fits the width, ids, states and
worker names keep their whole text, free text (names) wraps, nothing ends in "…". Sentences
are not wrapped (the terminal does it; a copied line stays one line). Colour only when asked
for (a terminal, and no ``NO_COLOR``). ``status --watch`` shows this same text through rich.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

# Columns whose text may wrap: everything else keeps its whole text on one line.
FREE_TEXT = frozenset({"name"})
STATE_COLOUR = {
    "pending": "33", "running": "36", "available": "32", "failed": "31", "cancelled": "2",
}  # fmt: skip
BOLD, RED, GREEN, BOLD_RED = "1", "31", "32", "1;31"


class Style:
    """ANSI styling, or none."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str | None) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text


def wants_colour() -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (no-color.org) or it is dumb."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def terminal_width(default: int = 80) -> int:
    """The terminal's columns; ``default`` when the output is not a terminal (as rich)."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return default


def cell_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK, most emoji) count two, combining
    marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def fold(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns (at least one line): broken between
    words, and a word longer than a line cut where the line ends."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if cell_width(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for c in word:  # a word alone on its line, folded if it is too long
            if cell_width(line + c) > width and line:
                lines.append(line)
                line = ""
            line += c
    return [*lines, line]


def table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    style: Style,
    colours: Sequence[Sequence[str | None]] = (),
) -> list[str]:
    """A table with a heavy head, as rich draws ``Table``: its lines."""
    widths = [
        max([cell_width(h), *(cell_width(row[i]) for row in rows)]) for i, h in enumerate(headers)
    ]
    free = [i for i, h in enumerate(headers) if h in FREE_TEXT]
    # Borders and padding: "│ " before each column and " │" after the last.
    spare = width - (sum(widths) + 3 * len(widths) + 1)
    while spare < 0 and free:
        widest = max(free, key=lambda i: widths[i])
        if widths[widest] <= max(cell_width(headers[widest]), 1):
            break
        widths[widest] -= 1
        spare += 1

    def line(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + right

    def cells(values: Sequence[str], codes: Sequence[str | None]) -> list[str]:
        folded = [fold(v, widths[i]) if i in free else [v] for i, v in enumerate(values)]
        out = []
        for n in range(max(len(f) for f in folded)):
            parts = []
            for i, f in enumerate(folded):
                text = f[n] if n < len(f) else ""
                pad = " " * (widths[i] - cell_width(text))
                parts.append(" " + style(text, codes[i] if codes else None) + pad + " ")
            out.append("│" + "│".join(parts) + "│")
        return out

    total = sum(widths) + 3 * len(widths) + 1
    lines = [" " * max(0, (total - cell_width(title)) // 2) + style(title, BOLD)]
    lines.append(line("┏", "━", "┳", "┓"))
    lines += [row.replace("│", "┃") for row in cells(headers, [BOLD] * len(headers))]
    lines.append(line("┡", "━", "╇", "┩"))
    for i, row in enumerate(rows):
        lines += cells(row, colours[i] if i < len(colours) else ())
    lines.append(line("└", "─", "┴", "┘"))
    return lines


def dashboard(
    summary: dict[str, Any],
    running: list[dict[str, Any]],
    *,
    width: int | None = None,
    colour: bool | None = None,
) -> str:
    """``vidretry status``: counts by state, the facts, the queue, the running jobs."""
    width = terminal_width() if width is None else width
    style = Style(wants_colour() if colour is None else colour)
    counts = []
    for name, n in summary["counts"].items():
        about = "≈ " if name == "available" and summary.get("available_estimated") else ""
        counts.append((name, f"{about}{n:,}"))
    lines = table(
        "queue",
        ("state", "assets"),
        counts,
        width=width,
        style=style,
        colours=[(STATE_COLOUR.get(name), None) for name, _ in counts],
    )
    dead = summary["outbox_dead"]
    lines += [
        style("oldest pending: ", BOLD) + str(summary["oldest_pending"] or "-"),
        style("failed in the last hour: ", BOLD) + str(summary["failed_last_hour"]),
        style("outbox: ", BOLD)
        + f"{summary['outbox_backlog']} waiting, "
        + style(f"{dead} dead", RED if dead else None),
        *queue(summary["queue"], style),
        *generator(summary, style),
        *releases(summary["releases"], style),
    ]
    jobs = []
    for job in running:
        now = job["now"]
        jobs.append(
            (
                str(job["id"]),
                job["name"],
                f"{job['attempts']}/{job['max_attempts']}",
                job["lease_owner"],
                f"{(now - job['claimed_at']).total_seconds():.0f}s" if job["claimed_at"] else "-",
                f"{(job['lease_expires_at'] - now).total_seconds():.0f}s",
            )
        )
    headers = ("id", "name", "attempt", "worker", "lease age", "expires in")
    lines += table("running", headers, jobs, width=width, style=style)
    return "\n".join(lines)


def queue(pause: dict[str, Any], style: Style) -> list[str]:
    """Running, or paused: by whom, why, since when, and the breaker's probes."""
    label = style("queue: ", BOLD)
    if pause["state"] == "running":
        return [label + style("running", GREEN)]
    who = "the circuit breaker" if pause["reason"] == "breaker" else pause["paused_by"]
    lines = [label + style("PAUSED", BOLD_RED) + f" by {who} since {pause['paused_at']}"]
    if pause["detail"]:
        lines.append(style("why: ", BOLD) + pause["detail"])
    if pause["reason"] == "breaker":
        probes = f"{pause['probes']}, last {pause['last_probe_at'] or 'none yet'}"
        if pause["last_probe_error"]:
            probes += f" ({pause['last_probe_error']})"
        lines.append(style("probes: ", BOLD) + probes + f", next {pause['next_probe_at']}")
    else:
        lines.append("no probes: a manual pause ends with `vidretry resume`")
    return lines


def window_words(seconds: float) -> str:
    """``[worker] starts_window_seconds`` as status says it: "minute" (the default 60),
    "hour" (3600), else "N seconds"."""
    named = {60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return named.get(float(seconds)) or f"{seconds:g} seconds"


def generator(summary: dict[str, Any], style: Style) -> list[str]:
    """The claim order, pending jobs by priority, the quotas, a "slow down" hold and an
    outage of the video store."""
    by_priority = summary["pending_by_priority"]
    order = summary["order"]
    if any(priority > 0 for priority in by_priority):
        shown = " · ".join(f"{priority}: {n:,}" for priority, n in by_priority.items())
        order += f"; pending by priority {shown}"
    lines = [style("order: ", BOLD) + order]
    quota = summary.get("quota") or {}
    used = []
    if quota.get("max_running"):
        used.append(f"{summary['counts']['running']} of {quota['max_running']} running")
    if quota.get("max_starts_per_minute"):
        window = window_words(quota.get("starts_window_seconds", 60.0))
        used.append(
            f"{summary['starts_last_minute']} of {quota['max_starts_per_minute']} starts "
            f"in the last {window}"
        )
    if used:
        lines.append(style("quota: ", BOLD) + ", ".join(used))
    limited = summary["rate_limited"]
    if limited is not None:
        until = limited["until"].astimezone().strftime("%H:%M:%S")
        lines.append(
            style("generator: ", BOLD)
            + style(f"rate limited until {until}", BOLD_RED)
            + f" ({limited['why']})"
        )
    store = summary.get("store_down")
    if store is not None:
        since = store["since"].astimezone().strftime("%H:%M:%S")
        lines.append(
            style("store: ", BOLD)
            + style(f"unreachable since {since}", BOLD_RED)
            + f", finished videos held by the workers ({store['why']})"
        )
    return lines


def releases(about: dict[str, Any], style: Style) -> list[str]:
    """Which releases run, how many processes of each, and the schema; a warning when a
    mix of releases outlived a rollout."""
    shown = []
    for entry in about["running"]:
        counts = [
            f"{n} {role[:-1] if n == 1 and role != 'web' else role}"
            for role in ("workers", "notifiers", "web")
            if (n := entry[role])
        ]
        text = f"{entry['release']} ({', '.join(counts)}"
        if entry["unrecorded"]:
            text += ": " + ", ".join(entry["unrecorded"])
        shown.append(text + ")")
    lines = [
        style("releases: ", BOLD) + (" · ".join(shown) or "no worker, notifier or console"),
        style("schema: ", BOLD) + about["schema"],
    ]
    if about["warning"]:
        lines.append(style("rollout: ", BOLD) + style(about["warning"], BOLD_RED))
    return lines
