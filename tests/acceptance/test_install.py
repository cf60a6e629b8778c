"""A clean install: the built wheel, in a fresh virtual environment, finds all its SQL."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.acceptance.conftest import BuiltWheel
from vidretry.db import sqlfiles

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, check=False, cwd=cwd
    )


def test_the_repository_holds_no_symlink() -> None:
    tracked = run("git", "ls-files", "-s", cwd=ROOT)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert [line for line in tracked.stdout.splitlines() if line.startswith("120000")] == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_built_wheel_carries_every_statement_and_migration(
    built_wheel: BuiltWheel, tmp_path: Path
) -> None:
    assert built_wheel.returncode == 0, built_wheel.output
    # This machine's pip names an extra index location it ignores: that is pip, not the build.
    warnings = [
        line
        for line in built_wheel.output.splitlines()
        if "warn" in line.lower() and "Location 'file" not in line
    ]
    assert warnings == []
    wheel = built_wheel.path
    assert wheel is not None
    # The web console serves its pages and its one script from the package itself.
    packaged = set(zipfile.ZipFile(wheel).namelist())
    console = ROOT / "vidretry" / "web"
    for path in [*console.glob("templates/*.html"), *console.glob("static/*")]:
        assert f"vidretry/web/{path.parent.name}/{path.name}" in packaged, path.name

    # A fresh environment gets the wheel alone (its dependencies are PyPI's to serve, and
    # nothing in the suite leaves this machine): what it carries is what is found.
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-index", wheel, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    probe = run(
        python,
        "-c",
        "import vidretry, vidretry.db.sqlfiles as s;"
        "print(vidretry.__file__); print(sorted(s.queries())); "
        "print([m.version for m in s.migrations()]); print([f.name for f in s.functions()])",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    where, statements, versions, functions = probe.stdout.splitlines()
    assert where.startswith(str(venv))
    assert statements == str(sorted(sqlfiles.queries()))  # every statement of the checkout
    assert versions == str([m.version for m in sqlfiles.migrations()])
    assert functions == str([f.name for f in sqlfiles.functions()])
    assert not (Path(where).parent / "sql").is_symlink()
