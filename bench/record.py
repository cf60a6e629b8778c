"""bench/RESULTS.md's generated part: the table of a full ``python -m bench.run``, its
targets, and what moved since the run it replaces.

The machine's speed drifts by 2x from day to day, so a figure is compared with the recorded
one only as a ratio to a yardstick measured in the same run: a throughput to the raw loop's,
enqueue -> start to pgqueuer's, another latency to a commit's round trip (a latency here is a
few wake-ups and commits, and a commit's flush does not follow the CPU's speed: on a day the
raw loop ran 1.6x faster, failure -> notification took as long as before). Memory, pacing
and idle queries do not depend on the machine's speed and are compared as they are. A case has moved
when its ratio changed by more than the noise: the spread of the case and of its yardstick
(their ranges across the repetitions, as a share of their medians) in either run, and at
least ``FLOOR``.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

BEGIN = "<!-- bench.run: begin (written by `python -m bench.run --results`; edit outside) -->"
END = "<!-- bench.run: end -->"

RAW = "throughput: raw loop, 4 processes (jobs/s)"
PGQUEUER = "throughput: pgqueuer, 4 processes (jobs/s)"
VIDRETRY = "throughput: vidretry, 4 processes (jobs/s)"
COMMIT = "commit: one-row insert, round trip p50 (ms)"
# The least a ratio must move to count: two runs of one case on this machine differ by up to
# a tenth even side by side (bench/RESULTS.md); latencies, a few milliseconds read from two
# processes' clocks, by more.
FLOOR = 0.10
LATENCY_FLOOR = 0.25


@dataclass(frozen=True)
class Measured:
    median: float
    low: float
    high: float

    @property
    def spread(self) -> float:
        """The range across repetitions as a share of the median."""
        return (self.high - self.low) / self.median if self.median else 0.0


@dataclass(frozen=True)
class Moved:
    case: str
    then: float  # the ratio (or the figure) recorded
    now: float
    unit: str  # what the ratio is: "× raw loop", "× pgqueuer's", "as measured"
    noise: float
    better: bool


def measured(results: Mapping[str, Sequence[float]]) -> dict[str, Measured]:
    return {
        label: Measured(statistics.median(values), min(values), max(values))
        for label, values in results.items()
        if values
    }


# -- the yardsticks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How a case is judged: ``ratio`` of its median to the yardstick's (or None: as it is),
    whether more is better, and the floor of its noise."""

    yardstick: str | None
    ratio: Callable[[float, float], float]
    more_is_better: bool
    floor: float
    unit: str


def _per(value: float, yardstick: float) -> float:
    return value / yardstick


def rule_for(case: str) -> Rule:
    """A throughput against the raw loop; enqueue → start against the same peer's; another
    latency in commits (its milliseconds over a commit's); the rest as is."""
    if case.endswith("(jobs/s)") and case != RAW:
        return Rule(RAW, _per, True, FLOOR, "× raw loop")
    if case.startswith("enqueue → start: ") and "vidretry" in case:
        peer = case.replace("vidretry", "pgqueuer")
        return Rule(peer, _per, False, LATENCY_FLOOR, "× pgqueuer's")
    if case.endswith("(ms)") and case != COMMIT:
        return Rule(COMMIT, _per, False, LATENCY_FLOOR, "× a commit")
    more_is_better = case.startswith("pacing: achieved") or "smallest spacing" in case
    return Rule(None, _per, more_is_better, FLOOR, "as measured")


def compare(then: Mapping[str, Measured], now: Mapping[str, Measured]) -> list[Moved]:
    """The cases of ``now`` whose ratio moved beyond the noise since ``then``. A case either
    run lacks, or whose yardstick either run lacks, is not compared; nor are the yardsticks,
    the machine's own speed."""
    moved = []
    for case, current in now.items():
        rule, recorded = rule_for(case), then.get(case)
        if recorded is None or case in (RAW, COMMIT):
            continue
        before, after = recorded.median, current.median
        noise = max(rule.floor, current.spread, recorded.spread)
        if rule.yardstick is not None:
            stick_then, stick_now = then.get(rule.yardstick), now.get(rule.yardstick)
            if not (stick_then and stick_then.median and stick_now and stick_now.median):
                continue
            before = rule.ratio(before, stick_then.median)
            after = rule.ratio(after, stick_now.median)
            noise = max(
                rule.floor,
                current.spread + stick_now.spread,
                recorded.spread + stick_then.spread,
            )
        if before and abs(after / before - 1) > noise:
            better = (after > before) == rule.more_is_better
            moved.append(Moved(case, before, after, rule.unit, noise, better))
    return moved


def report(then: Mapping[str, Measured], now: Mapping[str, Measured], heading: str) -> list[str]:
    """What moved since the recorded run (its heading line given), as Markdown lines."""
    speed = ""
    if RAW in then and RAW in now:
        speed += (f"; the raw loop ran at {then[RAW].median:,.0f} jobs/s then and "
                  f"{now[RAW].median:,.0f} now")  # fmt: skip
    if COMMIT in then and COMMIT in now:
        speed += f", a commit took {then[COMMIT].median:.2f} ms then and {now[COMMIT].median:.2f}"
    lines = [f"Compared with the recorded run ({heading}), as ratios to yardsticks measured in "
             f"the same run (bench/record.py){speed}:", ""]  # fmt: skip
    moved = compare(then, now)
    if moved:
        lines += ["| moved | then | now | change | noise | |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
        lines += [
            f"| {m.case} ({m.unit}) | {_num(m.then)} | {_num(m.now)} | {m.now / m.then:.2f}× "
            f"| ±{m.noise:.0%} | {'better' if m.better else '**worse**'} |"
            for m in moved
        ]
    else:
        lines.append("No case moved beyond the noise.")
    missing = [c for c in now if c not in (RAW, COMMIT) and not _comparable(c, then, now)]
    if missing:
        lines += ["", "Not compared (the case or its yardstick is missing from one of the "
                  "runs): " + "; ".join(missing) + "."]  # fmt: skip
    return lines


def _comparable(case: str, then: Mapping[str, Measured], now: Mapping[str, Measured]) -> bool:
    stick = rule_for(case).yardstick
    return case in then and (stick is None or (stick in then and stick in now))


def _num(value: float) -> str:
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


# -- the targets ------------------------------------------------------------------------------


def targets(now: Mapping[str, Measured]) -> list[str]:
    """Each target the run can judge, met or not, as a Markdown table."""

    def median(case: str) -> float | None:
        found = now.get(case)
        return found.median if found else None

    def first(prefix: str, part: str) -> float | None:
        return next((m.median for c, m in now.items() if c.startswith(prefix) and part in c), None)

    rows: list[str] = []

    def judge(target: str, met: bool, shown: str) -> None:
        rows.append(f"| {target} | {'met' if met else '**not met**'}: {shown} |")

    vidretry, pgqueuer, raw = median(VIDRETRY), median(PGQUEUER), median(RAW)
    if vidretry and pgqueuer:
        judge("throughput ≥ 1.5× pgqueuer (4 processes, same run)",
              vidretry / pgqueuer >= 1.5, f"{vidretry / pgqueuer:.2f}×")  # fmt: skip
    if vidretry and raw:
        judge("throughput ≥ 0.6× the raw loop (4 processes, same run)",
              vidretry / raw >= 0.6, f"{vidretry / raw:.2f}×")  # fmt: skip
    p50 = median("failure → notification p50 (ms)")
    p95 = median("failure → notification p95 (ms)")
    if p50 is not None and p95 is not None:
        judge("failure → notification p50 ≤ 3 ms, p95 ≤ 5 ms", p50 <= 3 and p95 <= 5,
              f"{p50:.1f} ms, {p95:.1f} ms")  # fmt: skip
    ours = median("enqueue → start: vidretry p50 (ms)")
    peer = median("enqueue → start: pgqueuer p50 (ms)")
    if ours is not None and peer:
        judge("enqueue → start p50 below pgqueuer's in the same run", ours <= peer,
              f"{ours:.1f} ms against {peer:.1f} ms ({ours / peer:.2f}×)")  # fmt: skip
    rate = median("pacing: achieved rate (msg/s, limit 25)")
    busiest = median("pacing: busiest 1-second window (msgs)")
    spacing = median("pacing: one chat, smallest spacing (s)")
    if rate is not None and busiest is not None and spacing is not None:
        judge("notifier at 95–100 % of its limit, no 1-second window above it; one chat "
              "≥ 1 s apart", 0.95 * 25 <= rate <= 25 and busiest <= 25 and spacing >= 1.0,
              f"{rate:.1f}/s, {busiest:.0f}, {spacing:.2f} s")  # fmt: skip
    for who in ("worker", "notifier"):
        queries = median(f"idle {who}: queries per second")
        if queries is not None:
            judge(f"an idle {who} sends ≤ 1 query per second", queries <= 1, f"{queries:.1f}")
    small, large = first("scale:", "with 10,000"), first("scale:", "with 1,000,000")
    if small and large:
        judge("claim throughput at 1 M finished rows within 10 % of 10 k",
              large / small >= 0.9, f"{large / small:.2f}×")  # fmt: skip
    fcfs, in_turn = first("fair:", "first come"), first("fair:", "in turn")
    if fcfs and in_turn:
        judge("fairness on ≥ 0.95× off (users asking in turn)", in_turn / fcfs >= 0.95,
              f"{in_turn / fcfs:.2f}×")  # fmt: skip
    return ["| target | result |", "| --- | --- |", *rows] if rows else []


# -- RESULTS.md ---------------------------------------------------------------------------------

_ROW = re.compile(
    r"^\| (?P<case>[^|]+?) \| (?P<median>[-\d.,]+) \| (?P<low>[-\d.,]+) – (?P<high>[-\d.,]+) \|"
)


def recorded(text: str) -> tuple[str, dict[str, Measured]]:
    """The heading line and the main table of a RESULTS.md: its generated block, or (for one
    written before there was one) the first table after the title."""
    if BEGIN in text and END in text:
        text = text.split(BEGIN, 1)[1].split(END, 1)[0]
    lines = text.splitlines()
    heading = next((line for line in lines if re.match(r"^\d{4}-\d\d-\d\d", line)), "?")
    table: dict[str, Measured] = {}
    for line in lines:
        if match := _ROW.match(line):
            table.setdefault(
                match["case"],
                Measured(*(float(match[k].replace(",", "")) for k in ("median", "low", "high"))),
            )
        elif table and not line.startswith("|"):
            break  # the first table only
    return heading, table


def replace_block(text: str, block: Sequence[str]) -> str:
    """``text`` (a RESULTS.md) with its generated block replaced by ``block``; a file without
    one gets it after its title, and its old first table, if any, is left below as it was."""
    generated = "\n".join([BEGIN, *block, END])
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        return before + generated + rest.split(END, 1)[1]
    title, _, rest = text.partition("\n")
    if not title.startswith("# "):
        title, rest = "# Benchmark results", text
    return f"{title}\n\n{generated}\n{rest}"
