"""The SQL shipped with vidretry: named statements (``sql/queries``) and migrations
(``sql/migrations``), read once from the package or, in a checkout, from beside it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import LiteralString, cast

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


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


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: LiteralString

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text: recorded when applied, compared on every start."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for entry in _sql_dir("migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            sql: LiteralString = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], sql))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migration versions must be 1, 2, 3, ... without gaps")
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1].version
