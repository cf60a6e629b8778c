"""``vidretry doctor`` on who can reach what: the SQL interface's functions running as a
superuser for another role, a console token in a file other users can read, generators'
URLs allowed over plain http:// or to the machine itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.hostile.conftest import documented_grants
from vidretry.app.doctor import Check, Verdict, _sql_interface, examine
from vidretry.config import load_config
from vidretry.db import connection
from vidretry.web import tokens

INTERFACE = (
    "vidretry_enqueue(text, bigint, bigint, jsonb, integer)",
    "vidretry_retry(bigint, bigint)",
    "vidretry_press_retry(bigint, bigint)",
    "vidretry_cancel(bigint, bigint)",
    "vidretry_track_message(bigint, bigint, bigint)",
    "vidretry_asset(bigint)",
)


def config_file(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "vidretry.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n{extra}')
    path.chmod(0o600)
    return path


def url_as(db_url: str, role: str) -> str:
    """The test database's URL, for another role."""
    return re.sub(r"^postgresql://[^@/]*@", f"postgresql://{role}@", db_url)


async def checks(path: Path) -> dict[str, list[Check]]:
    found: dict[str, list[Check]] = {}
    for check in await examine(load_config(path, env={})):
        found.setdefault(check.name, []).append(check)
    return found


@pytest.fixture
def roles(postgresql: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """A host bot's role and a role that may own vidretry's functions (no superuser), both
    able to log in; whatever they were given to own goes back to the test's superuser."""
    names = (f"bot_{postgresql.info.dbname}"[:63], f"owner_{postgresql.info.dbname}"[:63])
    postgresql.autocommit = True
    for name in names:
        postgresql.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        postgresql.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield names
    for name in names:
        postgresql.execute(
            sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(name))
        )
        postgresql.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    for name in names:
        postgresql.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


async def test_doctor_warns_when_another_role_may_call_functions_running_as_a_superuser(
    db_url: str, tmp_path: Path, roles: tuple[str, str], postgresql: psycopg.Connection[Any]
) -> None:
    bot, owner = roles
    path = config_file(tmp_path, db_url)
    (alone,) = (await checks(path))["sql interface"]
    assert alone.verdict is Verdict.OK  # only vidretry itself calls them
    postgresql.execute(documented_grants().replace("my_bot", f'"{bot}"').encode())
    (granted,) = (await checks(path))["sql interface"]
    assert granted.verdict is Verdict.WARN
    assert granted.detail == (
        "vidretry_asset, vidretry_cancel, vidretry_enqueue, vidretry_press_retry, vidretry_retry, "
        f"vidretry_track_message run as superuser {postgresql.info.user} and {bot} may call "
        "them: give vidretry's schema and objects an owner that is no superuser, and run "
        "`vidretry db upgrade` as it (docs/integrate.md#rights)"
    )
    # The embedded database has no other role to give them to: it says what can be done.
    async with await connection.connect(db_url) as conn:
        (embedded,) = await _sql_interface(conn, embedded=True)
    assert embedded.detail.endswith(
        f"may call them: the embedded database has no role but {postgresql.info.user}: "
        "accept it (give EXECUTE to your bot alone), or run vidretry on a PostgreSQL of your "
        "own, as a role that is no superuser (docs/integrate.md#rights)"
    )
    for function in INTERFACE:
        postgresql.execute(f'ALTER FUNCTION {function} OWNER TO "{owner}"'.encode())
    (owned,) = (await checks(path))["sql interface"]
    assert owned.verdict is Verdict.OK


async def test_doctor_warns_when_others_may_create_objects_in_vidretrys_schema(
    db_url: str, tmp_path: Path, postgresql: psycopg.Connection[Any]
) -> None:
    """PostgreSQL before 15 let PUBLIC create in ``public``: an operator of a caller's there,
    exactly matching the interface's argument types, would be picked over PostgreSQL's own."""
    path = config_file(tmp_path, db_url)
    postgresql.autocommit = True
    postgresql.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    (warning,) = (await checks(path))["sql interface"]
    assert (warning.verdict, warning.detail) == (
        Verdict.WARN,
        "PUBLIC may create objects in schema public, where vidretry is: an operator or "
        "function of theirs could be picked by the interface's statements; REVOKE CREATE ON "
        "SCHEMA public FROM PUBLIC",
    )
    postgresql.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    (fine,) = (await checks(path))["sql interface"]
    assert fine.verdict is Verdict.OK


async def test_doctor_warns_when_another_role_owns_vidretrys_schema(
    db_url: str, tmp_path: Path, roles: tuple[str, str], postgresql: psycopg.Connection[Any]
) -> None:
    """A schema's owner may create in it whatever its grants say: ``public`` belongs to
    pg_database_owner since PostgreSQL 15, that is to whoever owns the database."""
    _, other = roles
    path = config_file(tmp_path, db_url)
    database = sql.Identifier(postgresql.info.dbname)
    postgresql.execute(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(other))
    )
    (owner,) = (await checks(path))["sql interface"]
    assert (owner.verdict, owner.detail) == (
        Verdict.WARN,
        f"{other} owns schema public (as the database's owner), where vidretry is, and may "
        "create objects in it: an operator or function of theirs could be picked by the "
        f"interface's statements; ALTER SCHEMA public OWNER TO {postgresql.info.user}",
    )
    async with await psycopg.AsyncConnection.connect(url_as(db_url, other)) as theirs:
        await theirs.execute("CREATE FUNCTION public.zz() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        await theirs.execute("DROP FUNCTION public.zz()")
    postgresql.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(database))
    postgresql.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(other)))
    (schema_owner,) = (await checks(path))["sql interface"]
    assert schema_owner.verdict is Verdict.WARN
    assert schema_owner.detail.startswith(f"{other} owns schema public, where vidretry is")
    postgresql.execute("ALTER SCHEMA public OWNER TO pg_database_owner")
    (fine,) = (await checks(path))["sql interface"]
    assert fine.verdict is Verdict.OK


async def test_doctor_as_a_role_that_may_only_call_the_interface_checks_what_it_can(
    db_url: str, tmp_path: Path, roles: tuple[str, str], postgresql: psycopg.Connection[Any]
) -> None:
    """Run with the host bot's database URL: the refusal is one check among the others,
    which go on, not an error that ends them all."""
    bot, _ = roles
    postgresql.execute(documented_grants().replace("my_bot", f'"{bot}"').encode())
    found = await checks(config_file(tmp_path, url_as(db_url, bot)))
    assert found["database"][0].verdict is Verdict.OK
    (refused,) = found["schema"]
    assert refused.verdict is Verdict.FAIL
    assert refused.detail == (
        f"permission denied for table vidretry_migrations: role {bot} may not read "
        "vidretry's tables; run doctor with the database URL vidretry's processes use"
    )
    assert {"config", "handler", "output", "storage", "generator urls", "telegram"} <= set(found)


async def test_doctor_warns_of_a_console_token_other_users_can_read(
    db_url: str, tmp_path: Path
) -> None:
    """Where a deployment keeps secrets: the config file and the files beside it
    (deployment.md's secrets.env, a host bot's .env)."""
    async with await connection.connect(db_url) as conn:
        service = await tokens.add(conn, "hostbot", tokens.Role.SERVICE)
        gone = await tokens.add(conn, "old", tokens.Role.OPERATOR)
        await tokens.revoke(conn, "old")
    path = config_file(tmp_path, db_url)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"VIDRETRY_TOKEN={service}\nOLD={gone}\n")
    secrets.chmod(0o644)
    (warning,) = (await checks(path))["tokens"]
    assert warning.verdict is Verdict.WARN
    assert warning.detail == (
        f"{secrets} holds the console token 'hostbot' (role service: it asks for videos, and "
        "retries and cancels for any Telegram user) and other users can read it: chmod 600 "
        f"{secrets}, or revoke it (vidretry web token revoke hostbot)"
    )
    assert service not in warning.detail
    secrets.chmod(0o600)
    assert "tokens" not in await checks(path)


async def test_doctor_warns_of_generator_urls_over_http_or_to_this_machine(
    db_url: str, tmp_path: Path
) -> None:
    (default,) = (await checks(config_file(tmp_path, db_url)))["generator urls"]
    assert (default.verdict, default.detail) == (
        Verdict.OK, "https:// only, any host, public addresses"
    )  # fmt: skip
    plain = config_file(tmp_path, db_url, "[generator_urls]\nallow_http = true\n")
    (http,) = (await checks(plain))["generator urls"]
    assert http.verdict is Verdict.WARN
    assert "allow_http = true: a generator's URL may be plain http://" in http.detail
    local = config_file(tmp_path, db_url, '[generator_urls]\nallow_networks = ["127.0.0.0/8"]\n')
    (inside,) = (await checks(local))["generator urls"]
    assert inside.verdict is Verdict.WARN
    assert "may reach the services of the worker's own machine" in inside.detail
    both = config_file(
        tmp_path, db_url, '[generator_urls]\nallow_http = true\nallow_networks = ["127.0.0.1"]\n'
    )
    assert [check.detail.split(":")[0] for check in (await checks(both))["generator urls"]] == [
        "[generator_urls] allow_http = true",
        "[generator_urls] allow_networks holds 127.0.0.1",
    ]  # one warning does not hide the other
    provider = config_file(
        tmp_path, db_url,
        '[generator_urls]\nhosts = ["*.fal.media"]\nallow_networks = ["10.20.0.0/16"]\n',
    )  # fmt: skip
    (listed,) = (await checks(provider))["generator urls"]
    assert (listed.verdict, listed.detail) == (
        Verdict.OK, "https:// only, *.fal.media, public addresses, and 10.20.0.0/16"
    )  # fmt: skip
