"""The status dashboard drawn without rich: the same rules as the rich tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from vidretry.cli import plain

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def summary(**queue: Any) -> dict[str, Any]:
    return {
        "counts": {"pending": 3, "running": 1, "available": 1234567, "failed": 0},
        "available_estimated": True,
        "oldest_pending": NOW - timedelta(minutes=5),
        "failed_last_hour": 2,
        "outbox_backlog": 4,
        "outbox_dead": 1,
        "queue": queue or {"state": "running"},
        "order": "fair",
        "pending_by_priority": {0: 3},
        "rate_limited": None,
        "starts_last_minute": 0,
        "releases": {
            "schema": "version 20, SQL functions of vidretry 0.20.0",
            "running": [release("0.20.0", workers=2, notifiers=1)],
            "mixed_since": None,
            "warning": None,
        },
    }


def release(name: str, *unrecorded: str, workers: int = 0, notifiers: int = 0) -> dict[str, Any]:
    return {
        "release": name, "workers": workers, "notifiers": notifiers, "web": 0,
        "since": NOW, "unrecorded": list(unrecorded),
    }  # fmt: skip


def job(name: str, owner: str) -> dict[str, Any]:
    return {
        "id": 42, "name": name, "attempts": 1, "max_attempts": 3, "lease_owner": owner,
        "now": NOW, "claimed_at": NOW - timedelta(seconds=7),
        "lease_expires_at": NOW + timedelta(seconds=23),
    }  # fmt: skip


def test_the_dashboard_fits_80_columns_and_keeps_what_tells_rows_apart() -> None:
    name = "очень длинное имя видео для проверки переноса " * 3 + "🎬 конец"
    owner = "render-farm-07:123456"  # the default worker name is host:pid
    text = plain.dashboard(summary(), [job(name, owner)], width=80, colour=False)
    lines = text.splitlines()
    assert max(plain.cell_width(line) for line in lines) <= 80
    assert "…" not in text
    assert any(owner in line for line in lines)  # a worker's name is never cut
    assert "≈ 1,234,567" in text
    assert "outbox: 4 waiting, 1 dead" in lines
    assert "queue: running" in lines
    # Every row of a table is as wide as its borders (wide characters count twice).
    running = lines[[line.strip() for line in lines].index("running") + 1 :]
    # The name wraps between its words, and reads whole again.
    name_lines = [line.split("│")[2].strip() for line in running if line.startswith("│")]
    assert len(name_lines) > 5
    assert " ".join(name_lines) == name
    assert {plain.cell_width(line) for line in running} == {80}


def test_colour_only_when_asked_and_sentences_are_not_wrapped() -> None:
    reason = "render farm maintenance until the new GPUs are racked in the second hall, then"
    paused = summary(
        state="paused", reason="manual", paused_by="operator:root", paused_at=NOW, detail=reason
    )
    bare = plain.dashboard(paused, [], width=60, colour=False)
    assert "\x1b[" not in bare
    assert f"why: {reason}" in bare.splitlines()
    assert any(line.startswith("queue: PAUSED by operator:root") for line in bare.splitlines())
    coloured = plain.dashboard(paused, [], width=60, colour=True)
    assert "\x1b[1;31mPAUSED\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == bare


def test_a_breaker_pause_shows_its_probes() -> None:
    paused = summary(
        state="paused", reason="breaker", paused_by="breaker", paused_at=NOW,
        detail="5 assets in a row", probes=2, last_probe_at=NOW, last_probe_error="exit 1",
        next_probe_at=NOW + timedelta(seconds=30),
    )  # fmt: skip
    lines = plain.dashboard(paused, [], width=80, colour=False).splitlines()
    assert any(line.startswith("queue: PAUSED by the circuit breaker since") for line in lines)
    (probes,) = [line for line in lines if line.startswith("probes: ")]
    assert probes.startswith("probes: 2, last 2026-12-02 12:00:00+00:00 (exit 1), next ")


def test_fold_and_cell_width() -> None:
    assert plain.cell_width("ab") == 2
    assert plain.cell_width("视频") == 4
    assert plain.cell_width("é") == 1  # e + combining acute
    assert plain.fold("视频视频", 5) == ["视频", "视频"]
    assert plain.fold("", 3) == [""]


def test_priorities_quotas_and_a_slow_down_hold_are_shown() -> None:
    plain_queue = plain.dashboard(summary(), [], width=80, colour=False).splitlines()
    assert "order: fair" in plain_queue
    assert not any(line.startswith(("quota:", "generator:")) for line in plain_queue)
    until = datetime(2026, 12, 2, 12, 3, 4, tzinfo=UTC)
    busy = {
        **summary(),
        "pending_by_priority": {9: 1, 5: 20, 0: 1300},
        "quota": {"max_running": 4, "max_starts_per_minute": 10},
        "starts_last_minute": 7,
        "rate_limited": {"until": until, "why": "429 Too Many Requests"},
    }
    lines = plain.dashboard(busy, [], width=80, colour=False).splitlines()
    assert "order: fair; pending by priority 9: 1 · 5: 20 · 0: 1,300" in lines
    assert "quota: 1 of 4 running, 7 of 10 starts in the last minute" in lines
    for seconds, said in ((60, "minute"), (90, "90 seconds"), (3600, "hour"), (2.5, "2.5 seconds")):
        quota = {"max_starts_per_minute": 10, "starts_window_seconds": seconds}
        shown = plain.dashboard({**busy, "quota": quota}, [], width=80, colour=False)
        assert f"quota: 7 of 10 starts in the last {said}" in shown.splitlines()
    shown = until.astimezone().strftime("%H:%M:%S")
    assert f"generator: rate limited until {shown} (429 Too Many Requests)" in lines
    assert not any(line.startswith("store:") for line in lines)
    down = {**busy, "store_down": {"since": until, "why": "cannot store s3://v/1.mp4: 503"}}
    lines = plain.dashboard(down, [], width=80, colour=False).splitlines()
    assert (
        f"store: unreachable since {shown}, finished videos held by the workers "
        "(cannot store s3://v/1.mp4: 503)"
    ) in lines


def test_the_releases_that_run_are_shown_and_a_long_mix_is_a_warning() -> None:
    lines = plain.dashboard(summary(), [], width=80, colour=False).splitlines()
    assert "releases: 0.20.0 (2 workers, 1 notifier)" in lines
    assert "schema: version 20, SQL functions of vidretry 0.20.0" in lines
    assert not any(line.startswith("rollout:") for line in lines)
    mixed = summary()
    mixed["releases"] = {
        **mixed["releases"],
        "running": [
            release("0.19.0 or older", "worker gpu-1:77", workers=1),
            release("0.20.0", workers=1, notifiers=1),
        ],
        "warning": "releases 0.19.0 or older and 0.20.0 have run side by side for 1 h 5 min",
    }
    text = plain.dashboard(mixed, [], width=80, colour=True)
    assert "0.19.0 or older (1 worker: worker gpu-1:77) · 0.20.0 (1 worker, 1 notifier)" in text
    assert "\x1b[1;31mreleases 0.19.0 or older and 0.20.0 have run side by side" in text
