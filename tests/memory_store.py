"""A video store in memory, for the tests: what the others do, with a switch that makes it
unreachable (an outage) and a count of what it was asked."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from pathlib import Path

from vidretry.results.base import ResultMissing, Stored, StoreUnavailable, Tally


class MemoryStore:
    def __init__(self, bucket: str = "test") -> None:
        self.prefix = f"memory://{bucket}/"
        self.objects: dict[str, bytes] = {}
        self.down = False  # every call fails as an unreachable store does
        self.calls = 0

    def owns(self, uri: str) -> bool:
        return uri.startswith(self.prefix)

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("the store is unreachable (connection refused)")

    async def put_file(self, path: Path, key: str, *, limit: int) -> Stored:
        self._call()
        tally = Tally(limit, f"the video {key}")
        data = path.read_bytes()
        tally.add(data)
        return self._keep(key, data, tally)

    async def put_chunks(self, chunks: AsyncIterable[bytes], key: str, *, limit: int) -> Stored:
        self._call()
        tally = Tally(limit, f"the video {key}")
        data = b"".join([bytes(chunk) async for chunk in tally.counted(chunks)])
        return self._keep(key, data, tally)

    def _keep(self, key: str, data: bytes, tally: Tally) -> Stored:
        uri = self.prefix + key
        self.objects[uri] = data
        return Stored(uri, tally.size, tally.digest.digest())

    async def open(self, uri: str) -> MemoryDownload:
        self._call()
        if uri not in self.objects:
            raise ResultMissing(f"video missing: {uri}")
        return MemoryDownload(uri.rsplit("/", 1)[-1], self.objects[uri])

    async def check(self) -> str:
        self._call()
        return f"in memory ({len(self.objects)} videos)"

    async def delete(self, uris: Sequence[str]) -> None:
        self._call()
        for uri in uris:
            self.objects.pop(uri, None)


class MemoryDownload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.size = len(data)
        self.data = data
        self.at = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.at + n
        chunk, self.at = self.data[self.at : end], min(end, len(self.data))
        return chunk

    async def aclose(self) -> None:
        pass
