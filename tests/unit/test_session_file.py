"""The bot's session file holds its login: it is created 0600 and tightened if others can
read it (``vidretry notifier`` does this before Telethon opens it)."""

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from telethon.crypto import AuthKey
from telethon.tl import types

from vidretry.errors import ConfigError
from vidretry.telegram.bot.client import SessionFile
from vidretry.telegram.session import keep_private, readable_by_others, session_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_telethon_adds_the_suffix_unless_it_is_there() -> None:
    assert session_file(Path("/x/bot.session")) == Path("/x/bot.session")
    assert session_file(Path("/x/bot")) == Path("/x/bot.session")


def test_a_new_session_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)  # the most open umask there is
    try:
        assert keep_private(tmp_path / "bot") == []
    finally:
        os.umask(old)
    assert mode(tmp_path / "bot.session") == 0o600
    assert not readable_by_others(tmp_path / "bot.session")


def test_an_existing_one_readable_by_others_is_tightened_with_its_journal(
    tmp_path: Path,
) -> None:
    path, journal = tmp_path / "bot.session", tmp_path / "bot.session-journal"
    for file in (path, journal):
        file.write_bytes(b"")
        file.chmod(0o644)
    lines = keep_private(path)
    assert [mode(path), mode(journal)] == [0o600, 0o600]
    assert len(lines) == 2
    assert lines[0] == f"{path} (the bot's login) was readable by other users: now mode 600"
    assert keep_private(path) == []  # nothing more to say


def test_a_session_in_a_missing_folder_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[telegram\] session: cannot create .*bot.session"):
        keep_private(tmp_path / "missing" / "bot.session")


# -- two notifiers, one file: a hand-over --------------------------------------------------


def _met(user_id: int) -> Any:
    """An answer from Telegram that names a user (Telethon writes them into the session)."""
    user = types.User(id=user_id, access_hash=user_id * 7, first_name="u")
    return types.contacts.ResolvedPeer(peer=types.PeerUser(user_id), chats=[], users=[user])


def _log_in(session: SessionFile) -> None:
    session.auth_key = AuthKey(os.urandom(256))
    session.save()


async def test_a_standby_logs_in_while_the_leader_before_it_still_has_the_file(
    tmp_path: Path,
) -> None:
    """The leader has met users since its last save, and is slow to log out (a failover
    under load) when a standby takes over: the standby's login waits for the leader's
    write to be committed (a second at most), not SQLite's 5 s until "database is locked";
    then the old leader's logout waits for nobody. What both met is kept. (In threads:
    SQLite locks the file between connections as between processes.)"""
    path = str(tmp_path / "bot.session")
    old = SessionFile(path)
    _log_in(old)
    old.process_entities(_met(1))
    new = SessionFile(path)
    started = time.monotonic()
    await asyncio.to_thread(_log_in, new)
    assert time.monotonic() - started < 4  # SQLite gives up after 5 s
    new.process_entities(_met(2))
    await asyncio.wait_for(asyncio.to_thread(old.close), timeout=4)
    new.close()
    kept = SessionFile(path)
    assert kept.get_entity_rows_by_id(1) == (1, 7)
    assert kept.get_entity_rows_by_id(2) == (2, 14)
    kept.close()
