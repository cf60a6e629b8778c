"""Connections, and running the named statements of ``sql/queries`` on them
(vidretry.db.sqlfiles loads them; a daemon's pool is vidretry.db.pool).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow, args_row, dict_row

from vidretry.db.redact import unavailable
from vidretry.db.sqlfiles import queries

Connection = psycopg.AsyncConnection[DictRow]
Params = Mapping[str, Any]
T = TypeVar("T")


def prepare_threshold(prepare: bool) -> int | None:
    # psycopg prepares a statement on the server after its fifth run on a connection. Behind
    # a transaction pooler (PgBouncer before 1.21, or without max_prepared_statements) the
    # next transaction may run on another server connection, which lacks it:
    # [database] prepare = false turns server-side preparing off.
    return 5 if prepare else None


async def connect(url: str, *, autocommit: bool = True, prepare: bool = True) -> Connection:
    """Open one connection; a database that is down becomes ``DatabaseUnavailable``."""
    try:
        return await psycopg.AsyncConnection.connect(
            url,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=5,
            prepare_threshold=prepare_threshold(prepare),
        )
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc) from None


async def execute(conn: Connection, name: str, params: Params) -> None:
    await conn.execute(queries()[name], params)


async def fetch_one(conn: Connection, name: str, params: Params) -> DictRow | None:
    cur = await conn.execute(queries()[name], params)
    return await cur.fetchone()


async def fetch_all(conn: Connection, name: str, params: Params) -> list[DictRow]:
    cur = await conn.execute(queries()[name], params)
    return await cur.fetchall()


async def fetch_records(conn: Connection, name: str, params: Params, record: type[T]) -> list[T]:
    """Rows as instances of the dataclass ``record``, whose fields are the statement's
    columns in the same order. Built positionally (cheaper than by keyword on a claim's
    hot path); the order is checked on a statement's first use."""
    async with conn.cursor(row_factory=args_row(record)) as cur:
        await cur.execute(queries()[name], params)
        if (name, record) not in _checked_records:
            _check_columns(name, cur.description or [], record)
            _checked_records.add((name, record))
        return await cur.fetchall()


_checked_records: set[tuple[str, type[Any]]] = set()


def _check_columns(name: str, columns: Sequence[psycopg.Column], record: type[Any]) -> None:
    got = [column.name for column in columns]
    want = [field.name for field in dataclasses.fields(record)]
    if got != want:
        raise RuntimeError(f"statement {name} returns {got}, but {record.__name__} has {want}")
