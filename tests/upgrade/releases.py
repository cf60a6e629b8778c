"""The releases the upgrade tests (and bench.upgrade) run: the previous one, from the git
history at the commit ``pyproject.toml`` names, and the next one as docs/upgrading.md's
examples would make it."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import LiteralString

from vidretry.db import sqlfiles

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"```sql\n-- file: sql/(migrations|functions)/(\w+)\.sql\n(.*?)```", re.S)
NEXT_RELEASE = (0, 21, 0)


def previous_release() -> tuple[str, str]:
    """(version, commit) of the release before this one."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    previous = project["tool"]["vidretry"]["previous-release"]
    return previous["version"], previous["commit"]


class MissingRelease(RuntimeError):
    """The previous release's commit is not in this clone."""


def extract(commit: str, into: Path) -> Path:
    """The tree of ``commit``, from this clone's history, in ``into``. A clone without it is
    an error that says what to do (the tests fail with it, never skip: CI clones in full)."""
    version, _ = previous_release()
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise MissingRelease(
            f"the previous release {version} (commit {commit}) is not in this clone's git "
            "history: clone in full, or `git fetch --unshallow`"
        )
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True, check=True,
    )  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # The "data" filter refuses links and paths out of the folder; Python 3.11 has it
        # from 3.11.4 (Debian 12's is 3.11.2), where the archive is still git's own.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - only before Python 3.11.4
            tar.extractall(into)

    return into


def examples() -> list[tuple[str, str, str]]:
    """(folder, name, text) of each example file of docs/upgrading.md, in the page's order."""
    page = (ROOT / "docs" / "upgrading.md").read_text(encoding="utf-8")
    return [(m[1], m[2], m[3]) for m in EXAMPLE.finditer(page)]


def next_release() -> sqlfiles.Catalog:
    """This release's catalog with the page's expand steps and functions added, numbered
    after this release's last step, as the next release would ship them."""
    shipped = sqlfiles.shipped()
    steps, functions = list(shipped.migrations), list(shipped.functions)
    for folder, name, text in examples():
        sql: LiteralString = text
        if folder == "functions":
            functions.append(sqlfiles.Function(name, sql))
            continue
        step = sqlfiles.parse_migration(len(steps) + 1, name.removeprefix("NNNN_"), sql)
        if step.kind == "expand":
            steps.append(step)
    return sqlfiles.Catalog(tuple(steps), tuple(sorted(functions, key=lambda f: f.name)),
                            NEXT_RELEASE)  # fmt: skip
