"""The overview's chart, drawn on the server as SVG: done and failed per minute, last hour.

No script and no library: 60 bars a series, numbers only, so nothing a user typed can reach
the markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

WIDTH, HEIGHT, MINUTES = 600, 120, 60


def outcomes_chart(rows: Sequence[Any], now: datetime) -> str:
    """``rows``: (minute, done, failed) for the minutes that had any, oldest first."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    done = [0] * MINUTES
    failed = [0] * MINUTES
    for row in rows:
        i = int((row["minute"] - start).total_seconds() // 60)
        if 0 <= i < MINUTES:
            done[i], failed[i] = int(row["done"]), int(row["failed"])
    top = max([1, *(d + f for d, f in zip(done, failed, strict=True))])
    bar = WIDTH / MINUTES
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + 20}" '
        f'class="chart" role="img" aria-label="done and failed per minute, last hour">'
    ]
    for i, (d, f) in enumerate(zip(done, failed, strict=True)):
        x = i * bar
        hd, hf = HEIGHT * d / top, HEIGHT * f / top
        if d:
            parts.append(
                f'<rect class="done" x="{x:.1f}" y="{HEIGHT - hd:.1f}" '
                f'width="{bar - 1:.1f}" height="{hd:.1f}"><title>{d} done</title></rect>'
            )
        if f:
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{HEIGHT - hd - hf:.1f}" '
                f'width="{bar - 1:.1f}" height="{hf:.1f}"><title>{f} failed</title></rect>'
            )
    parts.append(
        f'<text x="0" y="{HEIGHT + 15}" class="axis">−60 min</text>'
        f'<text x="{WIDTH}" y="{HEIGHT + 15}" class="axis end">now · peak {top}/min</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
