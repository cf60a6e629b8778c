"""The configured store, as the worker and the notifier use it: a generator's result in
(``keep``), a kept video out (``open``, checked), and away (``delete``).

A result is kept in the configured store whatever it was: a local file (the generator's
``{output}``, or a path a Python handler returns) or an http(s) URL, copied at once (a
provider deletes its outputs within hours) within ``[worker] timeout_seconds``. A kept video
is read back from whichever store its URI names: the configured one, or the local disk for
``file://`` URIs and the bare paths vidretry recorded before it kept URIs.

Local files are vidretry's only inside the store's directory and ``[worker] output_dir``
(symlinks followed): a generator's result elsewhere is refused, and so is a URI elsewhere
when a video is read back or deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from vidretry.errors import HandlerError
from vidretry.results.base import (
    TELEGRAM_BOT_UPLOAD_LIMIT,
    ResultMissing,
    ResultRefused,
    ResultStore,
    Stored,
    Verified,
)
from vidretry.results.files import FileStore, path_of

Fetch = Callable[[str], AsyncGenerator[bytes]]


class Results:
    def __init__(
        self,
        store: ResultStore,
        *,
        scratch: Path,
        fetch: Fetch | None = None,
        limit: int = TELEGRAM_BOT_UPLOAD_LIMIT,
    ) -> None:
        """``store``: where videos are kept; ``scratch``: the generators' ``output_dir``
        (a file there is removed once a copy is kept elsewhere); ``fetch``: how to read a
        generator's URL; ``limit``: the largest video kept (Telegram's for bots)."""
        self.store = store
        self.scratch = scratch
        self.fetch = fetch
        self.limit = limit
        # Where local videos are vidretry's: the store's directory, and the generators'.
        own = store if isinstance(store, FileStore) else None
        generators = None if own is not None and own.directory == scratch else FileStore(scratch)
        self.local = tuple(files for files in (own, generators) if files is not None)
        # The directory store's directory, as the generator's own {output} names it.
        self.in_place = (
            str(own.directory) if own is not None and own.directory.is_absolute() else None
        )

    async def keep(self, result: str, key: str, *, url_timeout: float) -> Stored:
        """Keep a generator's result as ``key``: ``HandlerError`` when it is neither a video
        file nor an http(s) URL, ``ResultTooBig`` beyond the limit, ``StoreUnavailable``
        when the store cannot take it now."""
        if self.in_place is not None and os.path.dirname(result) == self.in_place:
            # The usual case, once per job: the generator's own video in the directory store,
            # kept where it is in one open. Anything unusual (a symlink, no regular file) goes
            # the way below, which looks where it leads.
            assert isinstance(self.store, FileStore)
            try:
                stored = await self.store.keep_in_place(result, limit=self.limit)
            except OSError:
                stored = None
            if stored is not None:
                return stored
        if urlsplit(result).scheme in ("http", "https"):
            if self.fetch is None:
                raise HandlerError("this worker cannot copy URLs (no HTTP client)")
            try:
                async with (
                    asyncio.timeout(url_timeout),
                    contextlib.aclosing(self.fetch(result)) as chunks,
                ):
                    return await self.store.put_chunks(chunks, key, limit=self.limit)
            except TimeoutError:
                raise HandlerError(
                    f"copying the generator's URL took over {url_timeout:g}s, the job's "
                    "limit ([worker] timeout_seconds)"
                ) from None
        path = await self._local_video(result)
        stored = await self.store.put_file(path, key, limit=self.limit)
        if stored.uri != path.as_uri() and path.parent == self.scratch:
            with contextlib.suppress(OSError):  # the store holds it now
                await asyncio.to_thread(path.unlink)
        return stored

    async def _local_video(self, result: str) -> Path:
        """The generator's file, if it is a regular file of the store's directory or
        ``[worker] output_dir``: the usual ``{output}`` costs the one stat it always did;
        anything else is resolved (symlinks followed) and must be in one of them."""
        path = Path(result)
        shown = result if len(result) <= 120 else result[:119] + "…"
        try:
            found = path.is_absolute() and os.lstat(path)
        except OSError:
            found = False
        if not found:
            raise HandlerError(
                f"the generator's result is neither a video file nor an http(s) URL: {shown!r}"
            )
        if stat.S_ISREG(found.st_mode) and any(path.parent == d.directory for d in self.local):
            return path
        real = Path(await asyncio.to_thread(os.path.realpath, path))
        if not real.is_file():  # noqa: ASYNC240 (one stat, off the usual path)
            raise HandlerError(
                f"the generator's result is neither a video file nor an http(s) URL: {shown!r}"
            )
        if await self._local_holder(real) is None:
            # A symlink in the output directory says where it leads: it looks inside.
            where = f"is a symlink to {real}, " if stat.S_ISLNK(found.st_mode) else "is "
            raise HandlerError(
                f"the generator's result {shown!r} {where}outside {self._local_names()} "
                "([worker] output_dir): refused"
            )
        return real

    async def _local_holder(self, path: Path) -> FileStore | None:
        """The directory of vidretry's that holds ``path`` (symlinks followed), if any."""
        for files in self.local:
            if await asyncio.to_thread(files.holds, path):
                return files
        return None

    def _local_names(self) -> str:
        return " or ".join(str(files.directory) for files in self.local)

    async def _holder(self, uri: str) -> ResultStore:
        if uri.startswith(("file://", "/")):
            holder = await self._local_holder(path_of(uri))
            if holder is None:
                raise ResultRefused(
                    f"refused: {uri} is outside the video store ({self._local_names()})"
                )
            return holder
        if self.store.owns(uri):
            return self.store
        raise ResultMissing(f"{uri} is in no store this process knows ([storage] url)")

    async def open(self, uri: str, *, size: int | None, sha256: bytes | None) -> Verified:
        """The kept video, read back checked against its recorded size and SHA-256 (a video
        kept before they were recorded is read as it is)."""
        download = await (await self._holder(uri)).open(uri)
        return Verified(download, uri, download.size if size is None else size, sha256)

    async def delete(self, uris: Sequence[str]) -> None:
        """Delete kept videos, each from the store that holds it."""
        by_store: dict[int, tuple[ResultStore, list[str]]] = {}
        for uri in uris:
            holder = await self._holder(uri)
            by_store.setdefault(id(holder), (holder, []))[1].append(uri)
        for holder, held in by_store.values():
            await holder.delete(held)

    def kept_by_vidretry(self, uri: str) -> bool:
        """Whether ``uri`` is a video vidretry kept in the configured store, and so its to
        delete: not a bare path (recorded before schema 19, maybe the user's own file), nor a
        file outside the store's directory, nor an object of another bucket."""
        if isinstance(self.store, FileStore):
            return uri.startswith("file://") and path_of(uri).parent == self.store.directory
        return self.store.owns(uri)  # an object store's own prefix
