import re

from vidretry.db import redact, sqlfiles


def test_every_statement_is_named_and_commented_or_trivially_read_only() -> None:
    queries = sqlfiles.queries()
    assert "claim_jobs" in queries
    assert "retry_asset" in queries
    for name, text in queries.items():
        assert text.strip(), name
        changes_state = re.search(r"\b(UPDATE|INSERT|DELETE)\b", text)
        if changes_state:
            assert text.lstrip().startswith("--"), f"{name} changes state but has no comment"


def test_comments_hold_no_placeholders() -> None:
    # psycopg would treat a %(x)s in a comment as a parameter.
    for name, text in sqlfiles.queries().items():
        for line in text.splitlines():
            if line.strip().startswith("--"):
                assert "%" not in line, f"{name}: {line}"


def test_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in sqlfiles.migrations()] == list(
        range(1, len(sqlfiles.migrations()) + 1)
    )


def test_a_signed_urls_query_is_cut_from_any_text() -> None:
    text = (
        "Error performing GET https://b.s3.amazonaws.com/v.mp4?X-Amz-Signature=abc&"
        "X-Amz-Credential=AKIA%2F1 in 2ms - 403; see http://x/y#frag and 'https://q/r?s=1'; "
        "retry with X-Amz-Signature=def or sig=ghi"
    )
    assert redact.without_queries(text) == (
        "Error performing GET https://b.s3.amazonaws.com/v.mp4?… in 2ms - 403; see http://x/y?… "
        "and 'https://q/r?…'; retry with X-Amz-Signature=… or sig=…"
    )
    assert redact.without_queries("exit status 1: no such file") == "exit status 1: no such file"


def test_a_urls_user_and_password_are_cut_from_any_text() -> None:
    text = (
        "bad https://u:PYPASS@cdn.example/v.mp4?token=abc from postgresql://me:p@ss@db:5432/x"
        " or 'ftp://anon@host' by mail@example.com"
    )
    assert redact.without_queries(text) == (
        "bad https://…@cdn.example/v.mp4?… from postgresql://…@db:5432/x or 'ftp://…@host' "
        "by mail@example.com"
    )


def test_redact_url_hides_the_password() -> None:
    assert redact.redact_url("postgresql://u:hunter2@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "hunter2" not in redact.redact_url("host=h password=hunter2 dbname=x")


# Every UPDATE, statement by statement and in order, with the guard that makes it a
# compare-and-set: the state (or lease token, or open row) it may only change from. A guard
# given as (cte, guard) lives in the named sub-select, which locks its rows FOR UPDATE SKIP
# LOCKED, and the UPDATE must take its rows from it. A new UPDATE fails this test until it
# is named here.
EXPECTED_GUARDS: dict[str, list[str | tuple[str, str]]] = {
    # breaker.sql: the breaker is one row (id is always true), serialised by lock_breaker.
    "note_failed_attempt": ["b.id"],
    "forget_streak": ["id"],
    "refund_attempt": ["state = 'running' AND lease_token = %(token)s", "p.resumed_at IS NULL"],
    "refund_streak": ["a.state IN ('pending', 'running')", "resumed_at IS NULL"],
    "choose_probe": ["p.resumed_at IS NULL"],
    "hold_breaker_pause": ["resumed_at IS NULL AND reason = 'breaker'"],
    "resume_queue": ["resumed_at IS NULL", "EXISTS (SELECT 1 FROM resumed)"],
    # bot.sql
    "set_bot_policy": ["id AND (admins, max_retries_per_user_per_day)"],
    # cancel.sql
    # jobs.sql
    "record_progress": ["state = 'running' AND lease_token = %(token)s"],
    "claim_jobs": [("due", "state = 'pending'"), "t.free_at <="],
    "set_queue_policy": ["q.id AND (q.fair, q.max_attempts) IS DISTINCT FROM"],
    "extend_leases": ["state = 'running' AND lease_token = ANY"],
    "complete_jobs": [
        "a.state = 'running' AND a.lease_token = ANY",
        "EXISTS (SELECT 1 FROM done)",
    ],
    "schedule_next_attempt": ["state = 'running' AND lease_token = %(token)s"],
    "fail_job": ["state = 'running' AND lease_token = %(token)s"],
    "settle_requests_and_queue_notifications": ["r.state = 'pending'"],
    "rescue_expired_jobs": [("expired", "state = 'running'")],
    "take_over_exhausted_jobs": [("expired", "state = 'running'")],
    "give_back_job": ["state = 'running' AND lease_token = %(token)s"],
    # leadership.sql
    "claim_leadership": ["leader IS NULL OR expires_at <"],
    "renew_leadership": ["token = %(token)s"],
    "resign_leadership": ["token = %(token)s"],
    "note_telegram_connection": ["leader = %(leader)s"],
    # outbox.sql
    "claim_notifications": ["n.state = 'pending'", ("due", "state = 'pending'")],
    "mark_notifications_started": ["n.state = 'sending' AND n.lease_token = ANY"],
    "mark_notifications_sent": ["n.state = 'sending' AND n.lease_token = ANY"],
    "reschedule_notification": ["n.state = 'sending' AND n.lease_token = %(token)s"],
    "bury_notification": ["state = 'sending' AND lease_token = %(token)s"],
    "extend_notification_leases": ["state = 'sending' AND lease_token = ANY"],
    "rescue_notifications_and_queue_set_aside_notices": [
        "SELECT id FROM notifications WHERE state = 'sending'"
    ],
    # progress.sql
    "remember_acceptance": ["state = 'pending'"],
    "progress_shown": ["r.state = 'pending'"],
    "progress_checked": ["state = 'pending'"],
    "forget_acceptances": ["state = 'pending'"],
    # web.sql
    "note_web_token_used": ["token_hash = %(hash)s"],
    "resend_notification": ["state = 'dead'"],
    # results.sql
    "note_store_outage_and_queue_notices": ["id AND NOT told"],
    "delivered_video_to_delete": ["a.state = 'available'"],
    # schema.sql
    "record_missing_checksum": ["checksum IS NULL"],
    "finish_step": ["finished_at IS NULL"],
    # the functions of sql/functions
    "vidretry_retry_asset": ["a.state = 'failed'", "r.state = 'failed'", "n.state = 'pending'"],
    "vidretry_cancel_job": ["a.state IN ('pending', 'running')"],
    "vidretry_cancel_asset": ["r.state = 'pending'"],
    "vidretry_withdraw_request": ["r.state = 'pending'", "n.state = 'pending'"],
    "vidretry_enqueue_request_v2": ["v.state = 'cancelled'"],
    "vidretry_track_message": ["r.state = 'pending'"],
}

# A function a migration defines, with its body (between the $$ quotes).
_FUNCTION = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(.*?\$\$(.*?)\$\$", re.S)


def functions() -> dict[str, str]:
    """The body of every SQL function: as sql/functions has it, else as the newest
    migration that defines it does."""
    found = {}
    for text in [m.sql for m in sqlfiles.migrations()] + [f.sql for f in sqlfiles.functions()]:
        for match in _FUNCTION.finditer(text):
            found[match[1]] = match[2]
    return found


def test_every_function_says_what_it_is_for() -> None:
    for function in sqlfiles.functions():
        (match,) = _FUNCTION.finditer(function.sql)  # one function a file, named after it
        assert match[1] == function.name
        before = function.sql[: match.start()].rstrip().splitlines()[-1]
        assert before.startswith("--"), f"{match[1]} has no comment"
    assert {"vidretry_enqueue", "vidretry_retry", "vidretry_cancel"} <= set(functions())


# An UPDATE statement (not FOR UPDATE, not ON CONFLICT ... DO UPDATE).
_UPDATE = re.compile(r"\bUPDATE\s+\w+(?:\s+AS\s+\w+)?\s+SET\b")


def _updates(text: str) -> list[tuple[str, str]]:
    """Each UPDATE's WHERE clause (its own, not a sub-select's) and the UPDATE's text."""
    found = []
    for match in _UPDATE.finditer(text):
        depth, end = 0, len(text)
        for i in range(match.end(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth < 0 or (depth == 0 and text.startswith(("RETURNING", ";"), i)):
                end = i
                break
        body = text[match.start() : end]
        depth, where = 0, ""
        for i in range(len(body)):
            depth += {"(": 1, ")": -1}.get(body[i], 0)
            if depth == 0 and body.startswith("WHERE", i):
                where = body[i + len("WHERE") :]
        found.append((" ".join(where.split()), body))
    return found


def _cte(text: str, name: str) -> str:
    match = re.search(rf"\b{name} AS (?:MATERIALIZED )?\(", text)
    assert match, f"no sub-select {name}"
    depth = 1
    for i in range(match.end(), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return " ".join(text[match.end() : i].split())
    raise AssertionError(f"unbalanced sub-select {name}")


def test_every_update_is_guarded_by_what_it_may_change_from() -> None:
    texts = {**sqlfiles.queries(), **functions()}
    statements = {n: t for n, t in texts.items() if _UPDATE.search(t)}
    assert set(statements) == set(EXPECTED_GUARDS), "name the guard of every new UPDATE here"
    for name, text in statements.items():
        updates = _updates(text)
        assert len(updates) == len(EXPECTED_GUARDS[name]), f"{name}: {len(updates)} UPDATEs"
        for (where, body), guard in zip(updates, EXPECTED_GUARDS[name], strict=True):
            assert where, f"{name}: an UPDATE without WHERE"
            if isinstance(guard, tuple):
                cte, guard = guard
                assert re.search(rf"\bFROM {cte}\b", body), f"{name}: rows not taken from {cte}"
                locked = _cte(text, cte)
                assert guard in locked, f"{name}: {cte} lacks {guard!r}"
                assert "SKIP LOCKED" in locked, f"{name}: {cte} locks nothing"
            else:
                assert guard in where, f"{name}: expected guard {guard!r} in WHERE {where!r}"


def test_the_guard_check_fails_an_unguarded_update() -> None:
    # The check itself: an UPDATE with no WHERE, or a WHERE without the state, is caught.
    assert _updates("UPDATE video_assets SET state = 'failed' RETURNING id") == [
        ("", "UPDATE video_assets SET state = 'failed' ")
    ]
    where, _ = _updates("UPDATE t SET x = (SELECT 1 FROM u WHERE a) WHERE id = 1")[0]
    assert where == "id = 1"


def test_statements_that_write_the_outbox_say_so() -> None:
    for name, text in sqlfiles.queries().items():
        if re.search(r"INSERT INTO notifications\b", text):
            assert "queue" in name, f"{name} writes outbox rows: name it queue_..."
