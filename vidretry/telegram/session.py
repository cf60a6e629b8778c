"""The bot's Telethon session file: it holds the bot's MTProto auth key, so whoever can read
it *is* the bot (sends to every user, receives every update) until the session is revoked.
It is kept to its owner: created 0600, and an existing one readable by others tightened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vidretry.errors import ConfigError

PRIVATE = 0o600


def session_file(configured: Path) -> Path:
    """The file Telethon uses for ``[telegram] session``: it adds ``.session`` unless the
    name ends with it."""
    if configured.name.endswith(".session"):
        return configured
    return configured.with_name(configured.name + ".session")


def readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except FileNotFoundError:
        return False


def keep_private(configured: Path) -> list[str]:
    """Before Telethon opens it: create the session file 0600 if it is missing (SQLite gives
    its journal the database file's mode), or take group's and others' access away from an
    existing one and its journal. Returns a line for each file it tightened."""
    path = session_file(configured)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"[telegram] session: cannot create {path}: {exc.strerror}") from None
    else:
        os.close(fd)
        return []
    tightened = []
    for file in (path, path.with_name(path.name + "-journal")):
        if readable_by_others(file):
            file.chmod(PRIVATE)
            tightened.append(f"{file} (the bot's login) was readable by other users: now mode 600")
    return tightened
