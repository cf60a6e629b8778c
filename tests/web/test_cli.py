"""`vidretry web token add | list | revoke` and `vidretry web`'s one-line errors, as a user
types them."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

from tests.acceptance.conftest import Cli
from vidretry.web.tokens import PREFIX


def test_a_token_is_printed_once_alone_on_the_last_line_then_listed_and_revoked(
    make_cli: Callable[[str], Cli],
) -> None:
    cli = make_cli("")
    made = cli("web", "token", "add", "olga", "--role", "operator")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith(PREFIX)
    assert len(token) >= len(PREFIX) + 43  # 32 random bytes, base64
    again = cli("web", "token", "add", "olga")
    assert (again.returncode, again.stderr.strip()) == (
        1, "vidretry: error: a token named olga exists: revoke it first",
    )  # fmt: skip
    listed = cli("web", "token", "list", "--json")
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["role"], row["last_used_at"]) == ("olga", "operator", None)
    assert token not in listed.stdout
    assert cli("web", "token", "revoke", "olga").stdout.strip() == "token olga revoked"
    gone = cli("web", "token", "revoke", "olga")
    assert (gone.returncode, gone.stderr.strip()) == (1, "vidretry: error: no token named olga")


def test_bad_input_is_one_line(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli("")
    for args, code, line in [
        (("web", "token", "add", "olga", "--role", "admin"), 2,
         "vidretry: error: --role must be viewer, operator or service, got 'admin'"),
        (("web", "token", "add", "no spaces"), 2,
         "vidretry: error: token name must be 1 to 64 letters, digits or . _ @ -, got 'no spaces'"),
    ]:  # fmt: skip
        result = cli(*args)
        assert (result.returncode, result.stderr.strip()) == (code, line)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("web", "--port", str(port), timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"vidretry: error: cannot listen on 127.0.0.1:{port} (in use, or not this machine's)"
    )
    assert "Traceback" not in result.stderr
