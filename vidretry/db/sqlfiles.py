"""The SQL shipped with vidretry: named statements (``sql/queries``), the schema's steps
(``sql/migrations``) and the SQL functions (``sql/functions``), read once from the package
or, in a checkout, from beside it.

A step after the history (``LEGACY_LAST``) declares what it is in its first comment lines
(docs/upgrading.md): ``-- kind: expand``, or ``-- kind: contract`` with ``-- breaks: vidretry
< X.Y.Z`` (the releases that cannot work with the schema once it is applied), and
``-- transaction: no`` for a step whose statements each run on their own (an index built
``CONCURRENTLY``, a backfill in batches).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Literal, LiteralString, cast

from vidretry.errors import SchemaError
from vidretry.version import Release, __version__, parse_release

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_FUNCTION_FILE = re.compile(r"^(\w+)\.sql$")
_DECLARATION = re.compile(r"^-- (kind|breaks|transaction): (.*?)\s*$")

# The migrations from before the expand/contract policy (vidretry 0.19.0 and older): they
# are recorded in ``vidretry_migrations``, whose highest version is what those releases check.
LEGACY_LAST = 19

Kind = Literal["history", "expand", "contract"]


def _sql_dir(kind: str) -> Traversable:
    """``sql/<kind>``: inside the package when installed from a wheel, beside it in a
    checkout (an editable install)."""
    packaged = resources.files("vidretry") / "sql"
    if packaged.is_dir():
        return packaged / kind
    return resources.files("vidretry").joinpath("..", "sql", kind)


@cache
def queries() -> Mapping[str, LiteralString]:
    """Every ``-- name: x`` block of ``sql/queries/*.sql``, keyed by name, loaded once."""
    found: dict[str, LiteralString] = {}
    for entry in sorted(_sql_dir("queries").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _NAME_LINE.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"SQL statement {name!r} is defined twice")
            # Our own files, shipped with the package: never built from input.
            found[name] = cast(LiteralString, body.strip().rstrip(";"))
    return found


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Migration:
    """One step of the schema: a file ``NNNN_name.sql`` of ``sql/migrations``."""

    version: int
    name: str
    sql: LiteralString
    kind: Kind = "history"
    # A contract step: releases older than this cannot work with the schema it leaves.
    breaks_before: Release | None = None
    # False: each statement runs and commits on its own (docs/upgrading.md).
    in_transaction: bool = True

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text: recorded when applied, compared on every start."""
        return _checksum(self.sql)

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def parse_migration(version: int, name: str, sql: LiteralString) -> Migration:
    """A migration file's step, with what its first comment lines declare; a step after
    the history that declares nothing, or something unknown, is an error."""
    if version <= LEGACY_LAST:
        return Migration(version, name, sql)
    declared: dict[str, str] = {}
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        match = _DECLARATION.match(line)
        if match:
            declared[match[1]] = match[2]
    where = f"sql/migrations/{version:04d}_{name}.sql"
    kind = declared.get("kind")
    if kind not in ("expand", "contract"):
        raise SchemaError(f"{where}: its first lines must say `-- kind: expand` or `contract`")
    breaks_before = None
    breaks = declared.get("breaks")
    if kind == "contract":
        match = re.fullmatch(r"vidretry < (\S+)", breaks or "")
        try:
            breaks_before = parse_release(match[1] if match else "")
        except ValueError:
            raise SchemaError(
                f"{where}: a contract step says which releases it breaks: "
                "`-- breaks: vidretry < X.Y.Z`"
            ) from None
    elif breaks is not None:
        raise SchemaError(f"{where}: an expand step breaks nothing (`-- breaks:` is a contract's)")
    transaction = declared.get("transaction", "yes")
    if transaction not in ("yes", "no"):
        raise SchemaError(f"{where}: `-- transaction:` is yes or no, got {transaction!r}")
    if transaction == "no" and "$$" in sql:
        raise SchemaError(f"{where}: a step outside a transaction holds simple statements only")
    concurrently = re.search(r"\bCONCURRENTLY\b", sql, re.IGNORECASE)
    if concurrently and transaction == "yes":
        raise SchemaError(f"{where}: CONCURRENTLY runs outside a transaction: `-- transaction: no`")
    for index in re.finditer(r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\b[^;]*", sql, re.IGNORECASE):
        if transaction == "no" and not re.match(
            r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s",
            index[0],
            re.IGNORECASE,
        ):
            raise SchemaError(
                f"{where}: outside a transaction, an index is built "
                "`CREATE INDEX CONCURRENTLY IF NOT EXISTS name` (so that a rerun resumes)"
            )
    step_kind: Kind = "expand" if kind == "expand" else "contract"
    return Migration(version, name, sql, step_kind, breaks_before, transaction == "yes")


def load_migrations(directory: Traversable) -> list[Migration]:
    """The steps in a directory of ``NNNN_name.sql`` files, in order."""
    found = []
    for entry in directory.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            sql: LiteralString = entry.read_text(encoding="utf-8")
            found.append(parse_migration(int(match[1]), match[2], sql))
    found.sort(key=lambda m: m.version)
    return found


@cache
def migrations() -> tuple[Migration, ...]:
    found = load_migrations(_sql_dir("migrations"))
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migration versions must be 1, 2, 3, ... without gaps")
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1].version


@dataclass(frozen=True)
class Function:
    """A file of ``sql/functions``: one SQL function, ``CREATE OR REPLACE``d by every
    ``db upgrade`` (with its grants), named after it."""

    name: str
    sql: LiteralString


@cache
def functions() -> tuple[Function, ...]:
    found = []
    for entry in _sql_dir("functions").iterdir():
        match = _FUNCTION_FILE.match(entry.name)
        if match:
            found.append(Function(match[1], entry.read_text(encoding="utf-8")))
    return tuple(sorted(found, key=lambda f: f.name))


def functions_checksum(files: tuple[Function, ...]) -> str:
    """One SHA-256 for the whole set: recorded when installed, compared on every start."""
    return _checksum("".join(f"-- {f.name}\n{f.sql}\n" for f in files))


@dataclass(frozen=True)
class Catalog:
    """What one release ships: its steps, its functions and its release number. The
    migrator and the schema check take one (the shipped one by default; tests add steps)."""

    migrations: tuple[Migration, ...]
    functions: tuple[Function, ...]
    release: Release

    @property
    def latest_version(self) -> int:
        return self.migrations[-1].version

    @property
    def functions_checksum(self) -> str:
        return functions_checksum(self.functions)


@cache
def shipped() -> Catalog:
    """This vidretry's own catalog."""
    return Catalog(migrations(), functions(), parse_release(__version__))
