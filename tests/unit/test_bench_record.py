"""bench.run's record of a run: the cases that moved since the recorded run are told apart
from a machine that is only slower or faster today, and RESULTS.md keeps what it says
outside its generated block."""

from bench import record
from bench.record import COMMIT, RAW, VIDRETRY, Measured

PGQUEUER = "throughput: pgqueuer, 4 processes (jobs/s)"
MEMORY = "memory: vidretry worker idle, RSS (MiB)"
FAILURE = "failure → notification p50 (ms)"

RECORDED = f"""# Benchmark results

{record.BEGIN}
2026-11-29 13:05 UTC; vm: 2 cores

| case | median | range | ratio |
| --- | ---: | ---: | --- |
| {RAW} | 10,000.0 | 9,800.0 – 10,200.0 |  |
| {VIDRETRY} | 6,000.0 | 5,900.0 – 6,100.0 | 2.00× pgqueuer, 0.60× raw loop |
| {PGQUEUER} | 3,000.0 | 2,950.0 – 3,050.0 |  |
| {MEMORY} | 41.0 | 41.0 – 41.1 |  |
| {FAILURE} | 2.4 | 2.3 – 2.5 |  |
| {COMMIT} | 1.0 | 0.99 – 1.01 |  |

| target | result |
| --- | --- |
| throughput ≥ 1.5× pgqueuer | met: 2.00× |
{record.END}

## How to read it

| case | median | range | ratio |
| --- | ---: | ---: | --- |
| an older table | 1.0 | 1.0 – 1.0 |  |
"""


def run(**medians: float) -> dict[str, Measured]:
    """A run's table: each case with a 2 % range around its median."""
    cases = {"raw": RAW, "vidretry": VIDRETRY, "pgqueuer": PGQUEUER, "memory": MEMORY,
             "failure": FAILURE, "commit": COMMIT}  # fmt: skip
    return {cases[k]: Measured(v, v * 0.99, v * 1.01) for k, v in medians.items()}


def moved(now: dict[str, Measured]) -> dict[str, bool]:
    """The cases that moved since RECORDED, and whether for the better."""
    _, then = record.recorded(RECORDED)
    return {m.case: m.better for m in record.compare(then, now)}


def test_the_recorded_table_is_read_from_the_generated_block() -> None:
    heading, then = record.recorded(RECORDED)
    assert heading == "2026-11-29 13:05 UTC; vm: 2 cores"
    assert then[VIDRETRY] == Measured(6000.0, 5900.0, 6100.0)
    assert "an older table" not in then
    # A RESULTS.md from before the block: its first table.
    _, old = record.recorded(RECORDED.replace(record.BEGIN, "").replace(record.END, ""))
    assert old[RAW].median == 10_000.0
    assert "an older table" not in old


def test_a_slower_day_is_no_regression_but_a_halved_ratio_is() -> None:
    # Everything at 0.6 of the speed, memory as it was: nothing moved.
    slower = run(raw=6000, vidretry=3600, pgqueuer=1800, memory=41.0, failure=4.0, commit=1.67)
    assert moved(slower) == {}
    # The same day, vidretry at half its ratio to the raw loop: the regression of issue 39.
    assert moved(run(raw=6000, vidretry=1800, pgqueuer=1800)) == {VIDRETRY: False}
    # Faster than recorded relative to the raw loop: told too, as better.
    assert moved(run(raw=6000, vidretry=4800, pgqueuer=1800)) == {VIDRETRY: True}
    # Within the noise (10 % at least): nothing.
    assert moved(run(raw=6000, vidretry=3400, pgqueuer=1800)) == {}


def test_latencies_are_judged_in_commits_and_memory_as_measured() -> None:
    # A failure told in twice the time while a commit took as long: worse.
    assert moved(run(commit=1.0, failure=4.8)) == {FAILURE: False}
    # Twice the time on a day a commit took twice as long: the machine, whatever the CPU did.
    assert moved(run(raw=20_000, commit=2.0, failure=4.8)) == {}
    assert moved(run(raw=5000, memory=60.0)) == {MEMORY: False}


def test_a_case_without_its_yardstick_or_a_noisy_one_is_not_flagged() -> None:
    assert moved(run(vidretry=1000)) == {}  # no raw loop in this run: not compared
    # A recorded run from before the commit's round trip was measured: latencies not compared.
    _, then = record.recorded(RECORDED)
    del then[COMMIT]
    now = run(raw=10_000, commit=1.0, failure=9.0)
    assert record.compare(then, now) == []
    assert record.report(then, now, "x")[-1] == (
        f"Not compared (the case or its yardstick is missing from one of the runs): {FAILURE}."
    )
    noisy = {RAW: Measured(6000, 3000, 9000), VIDRETRY: Measured(2800, 2700, 2900)}
    assert moved(noisy) == {}  # a ratio of 0.47 against 0.60, inside ±52 %


def test_the_report_names_what_moved_and_how_far() -> None:
    _, then = record.recorded(RECORDED)
    lines = record.report(then, run(raw=6000, vidretry=1800), "2026-11-29")
    assert "ran at 10,000 jobs/s then and 6,000 now" in lines[0]
    row = next(line for line in lines if line.startswith(f"| {VIDRETRY}"))
    assert "| 0.600 | 0.300 | 0.50× |" in row
    assert row.endswith("| **worse** |")
    assert record.report(then, run(raw=6000, vidretry=3600), "x")[-1] == (
        "No case moved beyond the noise."
    )


def test_the_targets_are_judged_from_the_run() -> None:
    table = "\n".join(record.targets(run(raw=10_000, vidretry=6500, pgqueuer=4000)))
    assert "| throughput ≥ 1.5× pgqueuer (4 processes, same run) | met: 1.62× |" in table
    assert "| throughput ≥ 0.6× the raw loop (4 processes, same run) | met: 0.65× |" in table
    slow = "\n".join(record.targets(run(raw=10_000, vidretry=5000, pgqueuer=4000)))
    assert "| **not met**: 1.25× |" in slow
    assert "| **not met**: 0.50× |" in slow
    assert record.targets({}) == []


def test_writing_a_run_keeps_what_the_file_says_outside_its_block() -> None:
    written = record.replace_block(RECORDED, ["2026-12-07 20:00 UTC; commit abc1234", "| new |"])
    assert written.startswith(f"# Benchmark results\n\n{record.BEGIN}\n2026-12-07 20:00 UTC")
    assert "| new |" in written
    assert "2026-11-29" not in written
    assert written.endswith(RECORDED.split(record.END, 1)[1])
    # A file without a block gets one after its title; a missing file, a title too.
    older = "# Benchmark results\n\nprose\n"
    assert record.replace_block(older, ["x"]) == (
        f"# Benchmark results\n\n{record.BEGIN}\nx\n{record.END}\n\nprose\n"
    )
    assert record.replace_block("", ["x"]).startswith(f"# Benchmark results\n\n{record.BEGIN}")
