"""A private PostgreSQL server in a directory, for development, the demo and the tests.

The server listens only on a unix socket inside its own data directory (``listen_addresses``
is empty), so nothing outside this machine, and no other unprivileged user, can reach it;
``trust`` authentication is therefore safe. PostgreSQL refuses to run as root: when vidretry
runs as root, the server runs as the ``postgres`` system user (or a ``vidretry`` system user
created for it) through ``runuser``.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidretry.errors import VidretryError

if TYPE_CHECKING:
    from vidretry.config import DatabaseConfig

DATABASE = "vidretry"
SUPERUSER = "vidretry"
SOCKET_PORT = 5432
INSTALL_HINT = "install it with `apt-get install postgresql` (Debian/Ubuntu)"


class EmbeddedError(VidretryError):
    exit_code = 3


def default_dir() -> Path:
    """Where the embedded server lives when ``[database] embedded_dir`` is not set."""
    if os.geteuid() == 0:
        # root's home is private: the unprivileged server user could not enter it.
        return Path("/var/lib/vidretry/postgres")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vidretry" / "postgres"


# Where distributions install the server binaries that are not on PATH.
USUAL_INITDB_PATHS = ("/usr/lib/postgresql/*/bin/initdb", "/usr/pgsql-*/bin/initdb")


def find_bindir(
    search_path: str | None = None, usual_paths: tuple[str, ...] = USUAL_INITDB_PATHS
) -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: from ``pg_config``, else the usual install
    paths (newest version first), else ``PATH``."""
    pg_config = shutil.which("pg_config", path=search_path)
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    installed = sorted(
        (path for pattern in usual_paths for path in glob.glob(pattern)),
        key=lambda p: [int(part) for part in re.findall(r"\d+", p)],
    )
    if installed:
        return Path(installed[-1]).parent
    on_path = shutil.which("initdb", path=search_path)
    if on_path:
        return Path(on_path).parent
    raise EmbeddedError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")


@dataclass(frozen=True)
class EmbeddedServer:
    """One private server. Constructing it does nothing; ``start`` initialises on first use."""

    directory: Path
    extra_settings: tuple[tuple[str, str], ...] = ()

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    @property
    def socket_host(self) -> str:
        return str(self.data_dir)

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self) -> str:
        """Initialise if needed, start if stopped, create the database; return its URL.

        Safe to call from several processes at once (a worker and a notifier starting
        together): they take turns on a lock file next to the data directory."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "start.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._start()

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.data_dir}&port={SOCKET_PORT}"

    def _start(self) -> str:
        if not self.is_initialised():
            self._initdb()
        if not self.is_running():
            result = self._pg_ctl(
                "start", "-w", "-t", "60", "-l", str(self.data_dir / "server.log"), check=False
            )
            if result.returncode != 0:
                log_tail = _tail(self.data_dir / "server.log")
                raise EmbeddedError(f"embedded PostgreSQL did not start: {log_tail}")
        self._ensure_database()
        return self.url

    def stop(self) -> bool:
        """Stop the server (fast shutdown); False if it was not running."""
        if not self.is_running():
            return False
        self._pg_ctl("stop", "-w", "-m", "fast")
        return True

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = _server_user()
        if owner is not None:
            _make_reachable(self.directory, owner)
        self._run(
            [
                str(find_bindir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
        settings = [
            ("listen_addresses", "''"),
            ("unix_socket_directories", f"'{self.data_dir}'"),
            ("port", str(SOCKET_PORT)),
            ("max_connections", "200"),
            *self.extra_settings,
        ]
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# vidretry embedded server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings)

    def _ensure_database(self) -> None:
        psql = str(find_bindir() / "psql")
        base = [psql, "-X", "-q", "-h", self.socket_host, "-p", str(SOCKET_PORT), "-U", SUPERUSER]
        exists = self._run(
            [
                *base,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
            ]
        )
        if exists.stdout.strip() != "1":
            self._run([*base, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}"])

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(find_bindir() / "pg_ctl"), "-D", str(self.data_dir), *args], check)

    def _run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        program = Path(argv[0]).name
        owner = _server_user()
        if owner is not None:
            argv = ["runuser", "-u", owner, "--", *argv]
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False, cwd="/", stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise EmbeddedError(f"{program} failed: {detail[-1] if detail else result.returncode}")
        return result


def _server_user() -> str | None:
    """The account the server runs as: None for ourselves, a system user when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "vidretry"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "vidretry"],
        check=True,
        capture_output=True,
    )
    return "vidretry"


def _make_reachable(directory: Path, owner: str) -> None:
    """Give the server user its directory, and check that it can walk down to it."""
    entry = pwd.getpwnam(owner)
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in directory.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise EmbeddedError(
                f"the {owner} user cannot enter {parent}: put [database] embedded_dir elsewhere"
            )


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return lines[-1] if lines else "empty server log"


def database_url(database: DatabaseConfig) -> str:
    """``[database] url``, or the embedded server's (started on first use)."""
    if database.url:
        return database.url
    return EmbeddedServer(database.embedded_dir or default_dir()).start()
