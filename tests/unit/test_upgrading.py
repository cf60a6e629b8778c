"""The upgrade policy's parts that need no database: the release number, how a step declares
what it is (docs/upgrading.md), and how a step outside a transaction is split."""

import tomllib
from pathlib import Path

import pytest

import vidretry
from vidretry.db import online, sqlfiles
from vidretry.errors import SchemaError
from vidretry.version import parse_release

ROOT = Path(__file__).resolve().parents[2]


def test_the_release_is_pyproject_s_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert vidretry.__version__ == project["project"]["version"]
    assert sqlfiles.shipped().release == parse_release(vidretry.__version__)
    previous = project["tool"]["vidretry"]["previous-release"]
    assert parse_release(previous["version"]) < sqlfiles.shipped().release


def test_every_step_after_the_history_declares_what_it_is() -> None:
    for migration in sqlfiles.migrations():
        if migration.version > sqlfiles.LEGACY_LAST:
            assert migration.kind in ("expand", "contract"), migration.label


def step(text: str) -> sqlfiles.Migration:
    return sqlfiles.parse_migration(21, "x", text)


def test_declarations() -> None:
    assert step("-- kind: expand\nSELECT 1;").kind == "expand"
    contract = step("-- Drop x.\n-- kind: contract\n-- breaks: vidretry < 0.21.0\nSELECT 1;")
    assert (contract.kind, contract.breaks_before) == ("contract", (0, 21, 0))
    assert contract.in_transaction
    outside = step("-- kind: expand\n-- transaction: no\nSELECT 1;")
    assert not outside.in_transaction
    # The history declares nothing and is what it always was.
    assert sqlfiles.parse_migration(19, "x", "SELECT 1;").kind == "history"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SELECT 1;", "must say `-- kind: expand` or `contract`"),
        ("-- kind: sideways\nSELECT 1;", "must say"),
        ("-- kind: contract\nSELECT 1;", "says which releases it breaks"),
        ("-- kind: contract\n-- breaks: 0.21\nSELECT 1;", "says which releases it breaks"),
        ("-- kind: expand\n-- breaks: vidretry < 0.21.0\nSELECT 1;", "breaks nothing"),
        ("-- kind: expand\n-- transaction: maybe\nSELECT 1;", "yes or no"),
        ("-- kind: expand\nCREATE INDEX CONCURRENTLY i ON t (a);", "`-- transaction: no`"),
        (
            "-- kind: expand\n-- transaction: no\nCREATE INDEX CONCURRENTLY i ON t (a);",
            "CONCURRENTLY IF NOT EXISTS",
        ),
        (
            "-- kind: expand\n-- transaction: no\nCREATE INDEX IF NOT EXISTS i ON t (a);",
            "CONCURRENTLY IF NOT EXISTS",
        ),
        (
            "-- kind: expand\n-- transaction: no\nCREATE FUNCTION f() RETURNS int"
            " LANGUAGE sql AS $$ SELECT 1 $$;",
            "simple statements only",
        ),
    ],
)
def test_a_step_that_declares_badly_is_refused(text: str, error: str) -> None:
    with pytest.raises(SchemaError, match=error):
        step(text)


def test_a_step_outside_a_transaction_is_split_into_its_statements() -> None:
    statements = online.split_statements(
        "-- kind: expand\n-- transaction: no\n"
        "ALTER TABLE t ADD COLUMN IF NOT EXISTS b int;\n"
        "-- Fill it.\n-- in batches\n"
        "UPDATE t SET b = a WHERE id IN (SELECT id FROM t WHERE b IS NULL LIMIT 10);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (b);\n"
        "-- the end\n"
    )
    assert [s.in_batches for s in statements] == [False, True, False]
    assert statements[1].sql.endswith("LIMIT 10)")
    assert online.INDEX_CONCURRENTLY.search(statements[2].sql)["name"] == "t_b"  # type: ignore[index]


def test_the_lock_timeout_is_the_one_the_migrator_sets() -> None:
    assert (
        f"lock_timeout = {online.LOCK_TIMEOUT_MS}" in sqlfiles.queries()["wait_for_locks_briefly"]
    )
