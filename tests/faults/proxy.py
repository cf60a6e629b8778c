"""A TCP proxy whose links can go dead without closing: what a dead NAT entry or a failed
load balancer does to a PostgreSQL connection.

``cut()`` stops forwarding on every open link and on links opened while cut: bytes in either
direction vanish, and nobody is told (no FIN, no RST; the client's kernel still sees a peer
that accepts). Those links stay dead for good, as a forgotten NAT entry does. After
``heal()`` new links forward again. It runs its own event loop in a thread, so a test that
drives subprocesses can use it as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    dead: bool
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class DeadLinkProxy:
    def __init__(self, unix_socket: str) -> None:
        self.unix_socket = unix_socket  # where PostgreSQL listens
        self.port = 0
        self.links: list[_Link] = []
        self.healthy = True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.tasks: list[asyncio.Task[None]] = []  # one per link

    def start(self) -> int:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self.loop
        ).result(timeout=10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        def cut() -> None:
            self.healthy = False
            for link in self.links:
                link.dead = True

        self.loop.call_soon_threadsafe(cut)

    def heal(self) -> None:
        def heal() -> None:
            self.healthy = True

        self.loop.call_soon_threadsafe(heal)

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            for link in self.links:
                for writer in link.writers:
                    writer.close()
            tasks = [task for task in self.tasks if not task.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)  # type: ignore[arg-type]
        link = _Link(dead=not self.healthy, writers=[writer])
        self.links.append(link)
        if link.dead:  # a link opened while cut goes nowhere
            await _pump(reader, None, link)
            return
        up_reader, up_writer = await asyncio.open_unix_connection(self.unix_socket)
        link.writers.append(up_writer)
        await asyncio.gather(_pump(reader, up_writer, link), _pump(up_reader, writer, link))


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, link: _Link
) -> None:
    """Forward until EOF; once the link is dead, read and drop (the peer is never told)."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            if link.dead or writer is None:
                continue
            writer.write(data)
            await writer.drain()
    if writer is not None and not link.dead:
        writer.close()
