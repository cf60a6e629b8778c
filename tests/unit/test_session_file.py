"""The bot's session file holds its login: it is created 0600 and tightened if others can
read it (``vidretry notifier`` does this before Telethon opens it)."""

import os
import stat
from pathlib import Path

import pytest

from vidretry.errors import ConfigError
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
