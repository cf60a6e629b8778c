"""The listing tells the truth: every package's docstring names each of its modules, and the
paths the SQL files name exist, so that a newcomer who follows them lands somewhere."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vidretry"
PACKAGES = sorted(p.parent for p in (ROOT / "vidretry").glob("*/**/__init__.py"))
SQL = sorted(
    [*(ROOT / "sql" / "queries").glob("*.sql"), *(ROOT / "sql" / "functions").glob("*.sql")]
)
# A path in this repository, as the SQL files' comments name one: vidretry/queue/jobs.py.
PATH = re.compile(r"\b(?:vidretry|sql|docs|tests|bench)/[\w./-]*[\w/]")


def modules_of(package: Path) -> set[str]:
    """The modules and subpackages a package holds, by name."""
    found = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    return found | {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}


# What a package's docstring says it may not import, or does not hold: from the word to the
# sentence's end ("Never ``telegram``, ``app`` or ``cli``"). Its modules are not listed there.
NEGATED = re.compile(r"\b(?:never|not|nor|no|nothing)\b[^.;]*", re.IGNORECASE)


def listed(docstring: str) -> set[str]:
    """The modules a package's docstring lists as entries: each as ``module`` in what the
    package holds, not in its "May import:" paragraph (the packages it may, or may never,
    import) nor after a "never", "not" or "no"."""
    holds = [p for p in docstring.split("\n\n") if not p.lstrip().startswith("May import")]
    return set(re.findall(r"``(\w+)``", NEGATED.sub("", "\n\n".join(holds))))


def left_out(package: Path) -> list[str]:
    """The modules of ``package`` that its docstring does not list as entries."""
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    return sorted(m for m in modules_of(package) if m not in listed(docstring))


# A named statement, as sql/queries files declare one (vidretry/db/sqlfiles.py reads them so).
STATEMENT = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def statements_named(source: str) -> set[str]:
    """The strings a module names statements with: every string constant, but a dict's keys
    and ``__all__`` (a statement is named as ``execute(conn, "claim_jobs", ...)`` or
    ``queries()["claim_jobs"]``; a text's key or an exported function may share its name)."""
    tree = ast.parse(source)
    spared: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            spared |= {id(key) for key in node.keys if key is not None}
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            spared |= {id(n) for n in ast.walk(node.value)}
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in spared
    }


def header_disagrees(sql: Path, modules: dict[str, set[str]]) -> list[str]:
    """Where a query file's header (its comments before the first statement) and the Python
    disagree: a module that runs one of its statements but is not named there, or a module
    (or a package, ``vidretry/web/``) named there that runs none of them."""
    text = sql.read_text()
    names = set(STATEMENT.findall(text))
    named = [p for p in PATH.findall(text.split("-- name:", 1)[0]) if p.startswith("vidretry/")]
    users = {path for path, strings in modules.items() if strings & names}
    unnamed = [f"runs one, not named: {u}" for u in sorted(users) if not _covered(u, named)]
    idle = [f"named, runs none: {n}" for n in named if not any(_covered(u, [n]) for u in users)]
    return unnamed + idle


def _covered(module: str, named: list[str]) -> bool:
    return any(module == n or (n.endswith("/") and module.startswith(n)) for n in named)


def python_modules() -> dict[str, set[str]]:
    return {
        p.relative_to(ROOT).as_posix(): statements_named(p.read_text(encoding="utf-8"))
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def missing_paths(sql: Path) -> list[str]:
    return [p for p in PATH.findall(sql.read_text()) if not (ROOT / p).exists()]


def test_every_package_docstring_names_each_of_its_modules() -> None:
    assert len(PACKAGES) >= 8  # the packages are found
    assert {str(p.relative_to(ROOT)): left_out(p) for p in PACKAGES if left_out(p)} == {}


def test_every_path_an_sql_file_names_exists() -> None:
    assert len(SQL) >= 10  # the files are found
    assert {s.name: missing_paths(s) for s in SQL if missing_paths(s)} == {}


@pytest.mark.parametrize(
    "docstring",
    [
        "Owns the claim (``claim``).\n\nMay import: ``db``. Never ``telegram``.",
        "Owns the claim (``claim``). Never ``telegram``, ``web`` or ``cli``.",
        "Owns the claim (``claim``), not ``telegram``.",
        "Owns the claim (``claim``) and the Telegram side (``telegram.outbox``).",
    ],
)
def test_a_module_only_named_as_forbidden_is_left_out(tmp_path: Path, docstring: str) -> None:
    """The accident this check missed: queue/telegram.py, "listed" by "Never ``telegram``"."""
    package = tmp_path / "queue"
    package.mkdir()
    (package / "__init__.py").write_text(f'"""{docstring}"""\n')
    (package / "claim.py").write_text("")
    assert left_out(package) == []
    (package / "telegram.py").write_text("")
    assert left_out(package) == ["telegram"]


def test_every_query_file_s_header_names_the_modules_that_run_its_statements() -> None:
    modules = python_modules()
    queries = sorted((ROOT / "sql" / "queries").glob("*.sql"))
    assert len(queries) >= 10  # the files are found
    assert len(modules) >= 50
    wrong = {q.name: header_disagrees(q, modules) for q in queries}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_the_header_check_fails_on_a_module_left_out_and_one_named_wrongly(
    tmp_path: Path,
) -> None:
    sql = tmp_path / "results.sql"
    sql.write_text(
        "-- Keeping videos (vidretry/queue/worker.py) and letting them go\n"
        "-- (vidretry/telegram/notifier.py).\n\n"
        "-- name: note_outage\nSELECT 1;\n-- name: video_to_delete\nSELECT 2;\n"
    )
    modules = {
        "vidretry/queue/maintenance/store_outage.py": statements_named(
            'await execute(conn, "note_outage", {})'
        ),
        "vidretry/telegram/notifier.py": statements_named('queries()["video_to_delete"]'),
        "vidretry/queue/worker.py": statements_named('log.info("kept")'),
        "vidretry/texts.py": statements_named('ENGLISH = {"note_outage": "a text"}'),
        "vidretry/__init__.py": statements_named('__all__ = ["video_to_delete"]'),
    }
    assert header_disagrees(sql, modules) == [
        "runs one, not named: vidretry/queue/maintenance/store_outage.py",
        "named, runs none: vidretry/queue/worker.py",
    ]


def test_the_checks_fail_on_a_module_left_out_and_a_path_gone(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Owns the claim (``claim``)."""\n')
    (package / "claim.py").write_text("")
    assert left_out(package) == []
    (package / "retry.py").write_text("")
    assert left_out(package) == ["retry"]
    header = tmp_path / "jobs.sql"
    header.write_text("-- Named statements for the job store (vidretry/queue/jobs.py).\n")
    assert missing_paths(header) == []
    header.write_text("-- Named statements for the job store (vidretry/jobs.py).\n")
    assert missing_paths(header) == ["vidretry/jobs.py"]
