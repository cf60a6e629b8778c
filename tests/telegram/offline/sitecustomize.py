"""Loaded at start-up by subprocesses the Telegram tests run (this folder is on PYTHONPATH):
refuse every connection that is not loopback or a unix socket, so a ``vidretry notifier``
under test can never reach Telegram or any other host."""

import socket

_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> None:
    if self.family == socket.AF_UNIX or (
        isinstance(address, tuple) and str(address[0]) in ("127.0.0.1", "::1", "localhost")
    ):
        return _connect(self, address)  # type: ignore[arg-type]
    raise OSError(f"network disabled in tests: refused connection to {address!r}")


socket.socket.connect = _loopback_only  # type: ignore[method-assign]
