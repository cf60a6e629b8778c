import re

from vidretry import db


def test_every_statement_is_named_and_commented_or_trivially_read_only() -> None:
    queries = db.queries()
    assert "claim_jobs" in queries
    assert "retry_job" in queries
    for name, text in queries.items():
        assert text.strip(), name
        changes_state = re.search(r"\b(UPDATE|INSERT|DELETE)\b", text)
        if changes_state:
            assert text.lstrip().startswith("--"), f"{name} changes state but has no comment"


def test_every_update_of_a_state_is_guarded_by_the_state_it_leaves() -> None:
    for name, text in db.queries().items():
        for update in re.findall(r"UPDATE \w+.*?(?:RETURNING|;|\Z)", text, flags=re.S):
            if re.search(r"SET\s+state\s*=", update) or "\n    SET state" in update:
                assert re.search(r"state\s*=\s*'\w+'", update.split("WHERE", 1)[-1]) or (
                    "FROM" in update  # guarded in a SKIP LOCKED sub-select
                ), f"{name}: state change without a state guard"


def test_comments_hold_no_placeholders() -> None:
    # psycopg would treat a %(x)s in a comment as a parameter.
    for name, text in db.queries().items():
        for line in text.splitlines():
            if line.strip().startswith("--"):
                assert "%" not in line, f"{name}: {line}"


def test_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in db.migrations()] == list(range(1, len(db.migrations()) + 1))


def test_redact_url_hides_the_password() -> None:
    assert db.redact_url("postgresql://u:hunter2@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "hunter2" not in db.redact_url("host=h password=hunter2 dbname=x")
