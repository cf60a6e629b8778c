"""The kernel's half of finding a dead link: keepalives and tcp_user_timeout on every
daemon connection, unless the URL says otherwise."""

from __future__ import annotations

from vidretry.db.deadlink import answer_seconds_for, dead_link_params


def test_every_daemon_connection_probes_its_link_within_the_answer_time() -> None:
    params = dead_link_params("postgresql://u@db.example:5432/app", 10)
    assert params == {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }


def test_what_the_url_sets_wins() -> None:
    url = "postgresql://u@h1:5432,h2:5432/app?keepalives_idle=60&tcp_user_timeout=0"
    params = dead_link_params(url, 10)
    assert "keepalives_idle" not in params
    assert "tcp_user_timeout" not in params
    assert params["keepalives_count"] == 3
    assert dead_link_params("host=/run/pg keepalives=0", 10).get("keepalives") is None


def test_a_statement_gets_a_third_of_the_lease_within_2_to_10_seconds() -> None:
    assert answer_seconds_for(30) == 10  # the worker's default lease
    assert answer_seconds_for(60) == 10  # the notifier's
    assert answer_seconds_for(12) == 4
    assert answer_seconds_for(3) == 2
