"""One meaning per word (issue 40). "Generation" is what vidretry does to videos; the retry round
is ``retry_round`` in Python, and ``generation`` only where it must stay: the database
column's name (inside SQL text), ``JobContext.generation`` (the deprecated alias for the
handlers of 0.19.0) and the old key the JSON output and command templates keep for one
release. "Store" is where videos are kept; the PostgreSQL package is ``vidretry.db``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vidretry"

# The one identifier allowed: the deprecated alias (models.py, class JobContext).
ALIASES = {("vidretry/models.py", "JobContext", "generation")}
# Where "generation" may be a dict key: the old names the JSON output and a command template
# still give for one release.
OLD_KEYS = {"vidretry/queue/reports.py", "vidretry/queue/handlers.py"}
# The PostgreSQL package by its old name, or "store" said of the database.
OLD_STORE = re.compile(r"vidretry[./]store\b|\bjob[- ]store\b|\boutbox[- ]store\b", re.IGNORECASE)


def misuses(source: str, path: str) -> list[str]:
    """Where the module's Python (not its SQL text, docstrings or comments) says
    "generation" for the retry round: each as ``path:line: what``."""
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {what}")

    def visit(node: ast.AST, cls: str | None) -> None:
        if isinstance(node, ast.ClassDef):
            if "generation" in node.name.lower():
                flag(node, f"class {node.name}")
            for child in node.body:
                visit(child, node.name)
            for deco in node.decorator_list:
                visit(deco, cls)
            return
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and "generation" in node.name.lower()
            and (path, cls, node.name) not in ALIASES
        ):
            flag(node, f"def {node.name}")
        names = {
            ast.Name: "id", ast.Attribute: "attr", ast.arg: "arg", ast.keyword: "arg",
            ast.alias: "name",
        }  # fmt: skip
        for kind, field in names.items():
            if isinstance(node, kind):
                name = getattr(node, field) or ""
                if "generation" in name.lower():
                    flag(node, f"name {name}")
        if isinstance(node, ast.alias) and node.asname and "generation" in node.asname.lower():
            flag(node, f"name {node.asname}")
        if isinstance(node, ast.Subscript) and _says_generation(node.slice):
            flag(node, 'row["generation"]: select the column AS retry_round')
        if isinstance(node, ast.Dict) and path not in OLD_KEYS:
            for key in node.keys:
                if key is not None and _says_generation(key):
                    flag(key, '{"generation": ...}: the key is retry_round')
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "{generation}" in node.value
            and path not in OLD_KEYS
        ):
            flag(node, "a {generation} placeholder")
        for child in ast.iter_child_nodes(node):
            visit(child, cls)

    visit(ast.parse(source), None)
    return found


def _says_generation(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == "generation"


def test_python_names_the_retry_round_retry_round() -> None:
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        path = module.relative_to(ROOT).as_posix()
        if "generation" in path:
            found.append(f"{path}: a module named for generation")
        found += misuses(module.read_text(encoding="utf-8"), path)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "def f(generation): pass",
        "x = job.generation",
        "generation = 1",
        "f(generation=1)",
        "class A:\n    def generation(self): pass",
        "class Generation: pass",
        'row["generation"]',
        '{"generation": 1}',
        'f"{asset}-g{generation}"',
        "from m import generation",
        "import m as generation_of",
    ],
)
def test_the_check_sees_the_old_word(source: str) -> None:
    assert misuses(source, "vidretry/example.py")


def test_the_check_spares_sql_docs_and_the_alias() -> None:
    source = '''
class JobContext:
    @property
    def generation(self):
        """The retry round's old name."""
        # the column "generation"
        return fetch("SELECT generation AS retry_round FROM video_assets")
'''
    assert misuses(source, "vidretry/models.py") == []
    assert misuses(source, "vidretry/other.py")  # the alias is one class's only


def test_store_is_where_videos_are_kept() -> None:
    """No text of the package, the docs or the SQL names the PostgreSQL package by its old
    path (``vidretry.store``) or calls the database a store."""
    files = [
        *PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.html"), *(ROOT / "docs").rglob("*.md"),
        ROOT / "README.md", *(ROOT / "sql").rglob("*.sql"),
    ]  # fmt: skip
    found = [
        f"{file.relative_to(ROOT)}:{number}: {line.strip()}"
        for file in files
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1)
        if OLD_STORE.search(line)
    ]
    assert not (PACKAGE / "store").exists(), "vidretry/store/ is back: the package is vidretry/db"
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "from vidretry.store import db",
        "see vidretry/store/db.py",
        "The job store: ...",
        "job-store",
    ],
)
def test_the_store_check_sees_the_old_meaning(line: str) -> None:
    assert OLD_STORE.search(line)
