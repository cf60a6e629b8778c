"""The listing tells the truth: every package's docstring names each of its modules, and the
paths the SQL files name exist, so that a newcomer who follows them lands somewhere."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def left_out(package: Path) -> list[str]:
    """The modules of ``package`` that its docstring does not name (as ``module``)."""
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    named = set(re.findall(r"``([\w.]+)``", docstring))
    return sorted(m for m in modules_of(package) if m not in named)


def missing_paths(sql: Path) -> list[str]:
    return [p for p in PATH.findall(sql.read_text()) if not (ROOT / p).exists()]


def test_every_package_docstring_names_each_of_its_modules() -> None:
    assert len(PACKAGES) >= 8  # the packages are found
    assert {str(p.relative_to(ROOT)): left_out(p) for p in PACKAGES if left_out(p)} == {}


def test_every_path_an_sql_file_names_exists() -> None:
    assert len(SQL) >= 10  # the files are found
    assert {s.name: missing_paths(s) for s in SQL if missing_paths(s)} == {}


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
