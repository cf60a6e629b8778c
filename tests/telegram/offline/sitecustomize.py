"""Loaded at start-up by subprocesses the Telegram tests run (this folder is on PYTHONPATH):
refuse every connection that is not loopback or a unix socket, so a ``vidretry notifier``
under test can never reach Telegram or any other host. The in-process tests install the
same guards (tests/telegram/conftest.py).

Two doors are shut: Python's socket module (asyncio's own loop connects through it) and
uvloop's loop, which connects in libuv without ever calling ``socket.connect``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _allowed(family: int, address: object) -> bool:
    return family == socket.AF_UNIX or (isinstance(address, tuple) and str(address[0]) in LOOPBACK)


def _refused(address: object) -> OSError:
    return OSError(f"network disabled in tests: refused connection to {address!r}")


def loopback_only(connect: Callable[..., Any]) -> Callable[..., Any]:
    """A ``socket.socket.connect`` that refuses what is not loopback or a unix socket."""

    def guarded(self: socket.socket, address: Any) -> Any:
        if _allowed(self.family, address):
            return connect(self, address)
        raise _refused(address)

    return guarded


def loopback_only_uvloop(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """The same for uvloop's loop, if uvloop is installed."""
    try:
        import uvloop
    except ImportError:
        return
    create_connection = uvloop.Loop.create_connection
    sock_connect = uvloop.Loop.sock_connect

    async def guarded_create_connection(
        self: Any, protocol_factory: Any, host: Any = None, port: Any = None, **kwargs: Any
    ) -> Any:
        if host is not None and not _allowed(socket.AF_INET, (host, port)):
            raise _refused((host, port))
        return await create_connection(self, protocol_factory, host, port, **kwargs)

    async def guarded_sock_connect(self: Any, sock: socket.socket, address: Any) -> Any:
        if not _allowed(sock.family, address):
            raise _refused(address)
        return await sock_connect(self, sock, address)

    patch(uvloop.Loop, "create_connection", guarded_create_connection)
    patch(uvloop.Loop, "sock_connect", guarded_sock_connect)


if __name__ == "sitecustomize":
    socket.socket.connect = loopback_only(socket.socket.connect)  # type: ignore[method-assign]
    loopback_only_uvloop()
