"""This release's code against this release's schema plus the next release's steps, written
as docs/upgrading.md says — its examples themselves, taken from the page: a column added, a
column renamed (a trigger, then a backfill in batches through an index built CONCURRENTLY),
a function with a new signature, a notification kind. The code works with what it does not
know, and its `db upgrade` changes nothing there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import functions_in, unpinned_functions
from tests.upgrade.conftest import Release, write_config
from tests.upgrade.releases import examples, next_release
from vidretry.db import connection, schema


def test_the_page_has_an_example_of_each_kind_of_change() -> None:
    found = {(folder, name) for folder, name, _ in examples()}
    assert {
        ("migrations", "NNNN_styles"),
        ("migrations", "NNNN_error_renamed"),
        ("functions", "video_assets_error_renamed"),
        ("migrations", "NNNN_error_backfilled"),
        ("migrations", "NNNN_last_error_dropped"),
        ("functions", "vidretry_check_ids_v2"),
        ("migrations", "NNNN_reminders"),
        ("migrations", "NNNN_fewer_attempts"),
    } == found


async def test_the_page_s_functions_keep_the_rules_of_every_function(
    conn: connection.Connection,
) -> None:
    """An example is copied: its functions keep the rules the page gives, checked as the
    shipped functions are (tests/hostile, tests/integration/test_schema.py) — each looks
    only in vidretry's schema, and each, a trigger's too, has its file in sql/functions."""
    catalog = next_release()
    assert (await schema.upgrade(conn, catalog)).functions
    assert await unpinned_functions(conn, "public") == []
    assert await functions_in(conn, "public") == sorted(f.name for f in catalog.functions)


@pytest.mark.slow  # this release's command line, worker and notifier: about 10 s
@pytest.mark.timeout(180)
def test_this_release_works_with_the_next_release_s_expand_steps(
    db_url: str, tmp_path: Path, current: Release
) -> None:
    catalog = next_release()

    async def upgrade() -> None:
        async with await connection.connect(db_url) as conn:
            # Rows written before the rename, for its backfill (three batches' worth).
            await conn.execute(
                "INSERT INTO video_assets (name, state, last_error, finished_at)"
                " SELECT 'old-' || i, 'cancelled', 'boom ' || i, now()"
                " FROM generate_series(1, 12000) AS i"
            )
            upgraded = await schema.upgrade(conn, catalog)
            assert upgraded.applied == [m.version for m in catalog.migrations[-4:]]
            assert upgraded.functions

    asyncio.run(upgrade())
    config = write_config(tmp_path / "vidretry.toml", db_url, tmp_path)
    cli = current.cli(config)

    def ok(*args: str) -> str:
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "a newer release's" in ok("db", "upgrade")  # and it changed nothing
    assert ok("status")  # the schema is one it works with
    asset = ok("enqueue", "fails-Маша", "--user", "7", "--param", "seconds=0.1").strip()
    ok("worker", "--drain")  # three failed attempts
    told = ok("notifier", "--transport", "console", "--mark-sent", "--drain")
    assert f"callback_data=retry_video:{asset}:" in told
    ok("retry", asset)
    ok("worker", "--drain")
    delivered = ok("notifier", "--transport", "console", "--mark-sent", "--drain")
    assert "fails-Маша" in delivered
    with psycopg.connect(db_url) as conn:

        def one(query: str) -> Any:
            row = conn.execute(query).fetchone()
            return row[0] if row else None

        assert one(f"SELECT state FROM video_assets WHERE id = {int(asset)}") == "available"
        # The rename's trigger kept the new column equal to what this release wrote, and the
        # backfill filled the rows from before it, through an index it then dropped.
        assert one("SELECT count(*) FROM video_assets"
                   " WHERE error IS DISTINCT FROM last_error") == 0  # fmt: skip
        assert one(f"SELECT error FROM video_assets WHERE id = {int(asset)}") is not None
        assert one("SELECT to_regclass('video_assets_error_to_fill')") is None
        # The next release's functions stayed: this release's `db upgrade` left them.
        assert one("SELECT release FROM vidretry_schema_functions") == "0.21.0"
        assert one("SELECT vidretry_check_ids_v2(1, 1, 1, 5)::text") == ""
