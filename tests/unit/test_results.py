"""The stores' contract, on the directory store and the one in memory: what ``keep`` makes
of a generator's result, what reading back checks, and what is deleted."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.memory_store import MemoryStore
from vidretry.config import parse_config, resolve_paths
from vidretry.errors import HandlerError
from vidretry.results import files
from vidretry.results.base import (
    CHUNK,
    MIB,
    ResultCorrupt,
    ResultMissing,
    ResultRefused,
    ResultTooBig,
    StoreUnavailable,
    object_key,
)
from vidretry.results.configured import configured
from vidretry.results.files import FileStore, path_of
from vidretry.results.keeping import Results

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(results: Results, uri: str, size: int | None, sha256: bytes | None) -> bytes:
    download = await results.open(uri, size=size, sha256=sha256)
    try:
        parts = []
        while part := await download.read(1000):
            parts.append(part)
        return b"".join(parts)
    finally:
        await download.aclose()


def test_object_keys_name_the_attempt_and_keep_a_plain_extension() -> None:
    assert object_key(7, 2, "ab12cd34", "/out/7-g2.webm") == "7-g2-ab12cd34.webm"
    assert object_key(7, 0, "ab12cd34", "https://cdn.example/v/abc?sig=x.y") == "7-g0-ab12cd34.mp4"
    assert object_key(7, 0, "ab12cd34", "/out/video.final version") == "7-g0-ab12cd34.mp4"


async def test_a_video_the_generator_wrote_into_the_directory_is_kept_where_it_is(
    tmp_path: Path,
) -> None:
    written = tmp_path / "1-g0.mp4"
    written.write_bytes(VIDEO)
    results = Results(FileStore(tmp_path), scratch=tmp_path)
    stored = await results.keep(str(written), "1-g0-token.mp4", url_timeout=10)
    assert stored.uri == written.as_uri()
    assert (stored.size, stored.sha256) == (len(VIDEO), hashlib.sha256(VIDEO).digest())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1-g0.mp4"]  # no copy
    assert await read_all(results, stored.uri, stored.size, stored.sha256) == VIDEO
    assert results.kept_by_vidretry(stored.uri)


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what is sent to a thread (``to_thread``)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_small_video_is_measured_on_the_loop_and_a_large_one_in_a_thread(
    tmp_path: Path,
) -> None:
    threads = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(threads)
    results = Results(FileStore(tmp_path), scratch=tmp_path)
    for size, in_a_thread in (
        (0, False), (16, False), (files.SMALL, False), (files.SMALL + 1, True),
        (CHUNK - 1, True), (CHUNK, True), (CHUNK + 1, True),
    ):  # fmt: skip
        video = (VIDEO * (size // len(VIDEO) + 1))[:size]
        written = tmp_path / f"{size}-g0.mp4"
        written.write_bytes(video)
        before = threads.submitted
        stored = await results.keep(str(written), f"{size}-g0-token.mp4", url_timeout=10)
        assert (stored.size, stored.sha256) == (size, hashlib.sha256(video).digest())
        assert (threads.submitted > before) is in_a_thread, size


def test_a_video_that_changed_size_after_its_fstat_is_measured_to_its_end(
    tmp_path: Path,
) -> None:
    written = tmp_path / "1-g0.mp4"
    written.write_bytes(VIDEO)
    for said in (0, 10, len(VIDEO) - 1, len(VIDEO) + 1, 2 * len(VIDEO), CHUNK):
        fd = os.open(written, os.O_RDONLY)
        try:
            stored = files._measure(fd, said, str(written), MIB)  # fstat said ``said`` bytes
        finally:
            os.close(fd)
        assert (stored.size, stored.sha256) == (len(VIDEO), hashlib.sha256(VIDEO).digest())


async def test_an_output_that_is_no_regular_file_is_refused_without_waiting(
    tmp_path: Path,
) -> None:
    results = Results(FileStore(tmp_path), scratch=tmp_path)
    os.mkfifo(tmp_path / "1-g0.mp4")  # opening it for reading would wait for a writer
    (tmp_path / "2-g0.mp4").mkdir()
    for name in ("1-g0.mp4", "2-g0.mp4", "3-g0.mp4"):  # a FIFO, a directory, nothing
        with pytest.raises(HandlerError, match="neither a video file nor an http"):
            await asyncio.wait_for(
                results.keep(str(tmp_path / name), "k.mp4", url_timeout=10), timeout=5
            )
    (tmp_path / "4-g0.mp4").write_bytes(VIDEO)
    with pytest.raises(ResultTooBig, match=r"the video 4-g0\.mp4 is"):
        await Results(FileStore(tmp_path), scratch=tmp_path, limit=10).keep(
            str(tmp_path / "4-g0.mp4"), "k.mp4", url_timeout=10
        )


async def test_a_video_elsewhere_is_copied_in_whole_or_not_at_all(tmp_path: Path) -> None:
    store_dir, output = tmp_path / "videos", tmp_path / "generator"
    output.mkdir()
    (output / "out.mp4").write_bytes(VIDEO)
    results = Results(FileStore(store_dir), scratch=output)
    stored = await results.keep(str(output / "out.mp4"), "2-g0-token.mp4", url_timeout=10)
    assert path_of(stored.uri) == store_dir / "2-g0-token.mp4"
    assert not (output / "out.mp4").exists()  # the store holds it now
    assert await read_all(results, stored.uri, stored.size, stored.sha256) == VIDEO

    store = FileStore(store_dir)
    with pytest.raises(ResultTooBig, match="at most 0 MiB"):
        await store.put_chunks(chunks(VIDEO, VIDEO), "3-g0-token.mp4", limit=len(VIDEO))
    assert sorted(p.name for p in store_dir.iterdir()) == ["2-g0-token.mp4"]  # no partial


async def test_a_generators_file_is_taken_only_from_its_output_dir(tmp_path: Path) -> None:
    """``result /absolute/path`` (or a Python handler's path) is confined as every file
    result is: the store's directory or ``[worker] output_dir``, symlinks followed."""
    output = tmp_path / "output"
    output.mkdir()
    secret = tmp_path / "vidretry.toml"
    secret.write_bytes(VIDEO)  # whatever it holds
    (output / "innocent.mp4").symlink_to(secret)
    store = MemoryStore()
    results = Results(store, scratch=output)
    for result in (str(secret), f"{output}/../vidretry.toml"):
        with pytest.raises(HandlerError, match=r"is outside .*output.*: refused"):
            await results.keep(result, "8-g0-token.mp4", url_timeout=10)
    with pytest.raises(HandlerError) as symlink:  # it looks inside: the error says why not
        await results.keep(str(output / "innocent.mp4"), "8-g0-token.mp4", url_timeout=10)
    assert str(symlink.value) == (
        f"the generator's result {str(output / 'innocent.mp4')!r} is a symlink to "
        f"{secret.resolve()}, outside {output} ([worker] output_dir): refused"
    )
    assert store.objects == {}
    assert secret.exists()
    (output / "made.mp4").write_bytes(VIDEO)
    (output / "alias.mp4").symlink_to(output / "made.mp4")  # a symlink inside is followed
    stored = await results.keep(str(output / "alias.mp4"), "9-g0-token.mp4", url_timeout=10)
    assert store.objects[stored.uri] == VIDEO


async def test_the_store_reads_and_deletes_only_inside_its_directory(tmp_path: Path) -> None:
    """However a URI got into the outbox or the asset's row: a file outside the store's
    directory (by a symlink, ``..`` or percent-escapes too) is refused, never read, never
    deleted."""
    store_dir = tmp_path / "videos"
    store_dir.mkdir()
    secret = tmp_path / "vidretry.toml"
    secret.write_text('bot_token = "1:not-for-you"\n')
    (store_dir / "innocent.mp4").symlink_to(secret)
    (store_dir / "kept.mp4").write_bytes(VIDEO)
    for results in (
        Results(FileStore(store_dir), scratch=store_dir),
        Results(MemoryStore(), scratch=store_dir),  # an object store: output_dir's files
    ):
        for uri in (
            secret.as_uri(),
            str(secret),  # a bare path, as recorded before schema 19
            (store_dir / "innocent.mp4").as_uri(),
            f"file://{store_dir}/../vidretry.toml",
            f"file://{store_dir}/%2E%2E/vidretry.toml",
        ):
            with pytest.raises(ResultRefused, match="outside the video store"):
                await results.open(uri, size=None, sha256=None)
            with pytest.raises(ResultRefused, match="outside the video store"):
                await results.delete([uri])
        assert await read_all(results, (store_dir / "kept.mp4").as_uri(), None, None) == VIDEO
    assert secret.read_text().startswith("bot_token")
    with pytest.raises(ResultRefused, match="outside the video store"):
        await FileStore(store_dir).open(secret.as_uri())
    with pytest.raises(ResultRefused, match="outside the video store"):
        await FileStore(store_dir).delete([secret.as_uri()])


async def test_an_object_store_reads_and_deletes_only_under_its_prefix(tmp_path: Path) -> None:
    """``s3://videos/bot``: another prefix of the bucket, another bucket, or a key that
    climbs out are refused before any request is made."""
    config = parse_config({"storage": {"url": "s3://videos/bot", "region": "us-east-1",
                                       "endpoint_url": "http://127.0.0.1:9"}})  # fmt: skip
    results = configured(resolve_paths(config, tmp_path))
    assert results.kept_by_vidretry("s3://videos/bot/1-g0-a1b2c3d4.mp4")
    for uri in ("s3://videos/other/1.mp4", "s3://videos/botany/1.mp4",
                "s3://videos/bot/../other/1.mp4", "s3://other/bot/1.mp4"):  # fmt: skip
        assert not results.kept_by_vidretry(uri)
        assert not results.store.owns(uri)
        with pytest.raises(ResultRefused, match="outside the video store"):
            await results.store.delete([uri])
        with pytest.raises(ResultRefused, match="outside the video store"):
            await results.store.open(uri)


async def test_a_result_that_is_neither_a_file_nor_a_url_is_the_generators_failure(
    tmp_path: Path,
) -> None:
    results = Results(FileStore(tmp_path), scratch=tmp_path)
    for result in ("done!", "relative/video.mp4", str(tmp_path / "missing.mp4"), str(tmp_path)):
        with pytest.raises(HandlerError, match="neither a video file nor an http"):
            await results.keep(result, "k.mp4", url_timeout=10)
    with pytest.raises(HandlerError, match="cannot copy URLs"):
        await results.keep("https://cdn.example/v.mp4", "k.mp4", url_timeout=10)


async def test_a_video_kept_elsewhere_leaves_the_scratch_directory(tmp_path: Path) -> None:
    store = MemoryStore()
    written = tmp_path / "4-g0.mp4"
    written.write_bytes(VIDEO)
    results = Results(store, scratch=tmp_path)
    stored = await results.keep(str(written), "4-g0-token.mp4", url_timeout=10)
    assert stored.uri == "memory://test/4-g0-token.mp4"
    assert not written.exists()
    assert await read_all(results, stored.uri, stored.size, stored.sha256) == VIDEO

    store.down = True
    with pytest.raises(StoreUnavailable):
        await results.open(stored.uri, size=None, sha256=None)


async def test_reading_back_checks_the_size_and_the_sha256_kept(tmp_path: Path) -> None:
    store = MemoryStore()
    results = Results(store, scratch=tmp_path)
    stored = await store.put_chunks(chunks(VIDEO), "5.mp4", limit=MIB)
    assert stored.sha256 is not None
    store.objects[stored.uri] = VIDEO[:-1] + b"!"  # a bit flipped at rest
    with pytest.raises(ResultCorrupt, match="SHA-256 differs"):
        await read_all(results, stored.uri, stored.size, stored.sha256)
    store.objects[stored.uri] = VIDEO[:-10]  # truncated
    with pytest.raises(ResultCorrupt, match=f"{len(VIDEO) - 10} bytes, {len(VIDEO)} kept"):
        await read_all(results, stored.uri, stored.size, stored.sha256)
    # A video recorded before sizes and hashes were: read as it is.
    assert await read_all(results, stored.uri, None, None) == VIDEO[:-10]


async def test_only_what_vidretry_kept_is_deleted(tmp_path: Path) -> None:
    own = tmp_path / "mine.mp4"
    own.write_bytes(VIDEO)
    output = tmp_path / "output"
    output.mkdir()
    (output / "6-g0.mp4").write_bytes(VIDEO)
    results = Results(FileStore(tmp_path / "videos"), scratch=output)
    kept = await results.keep(str(output / "6-g0.mp4"), "6-g0-token.mp4", url_timeout=10)
    assert not results.kept_by_vidretry(str(own))  # a bare path: recorded before schema 19
    assert not results.kept_by_vidretry(own.as_uri())  # outside the store's directory
    assert results.kept_by_vidretry(kept.uri)
    await results.delete([kept.uri, kept.uri])  # one already gone is no error
    assert not path_of(kept.uri).exists()
    assert own.exists()
    with pytest.raises(ResultMissing):
        await results.open(kept.uri, size=None, sha256=None)
    with pytest.raises(ResultMissing, match="in no store this process knows"):
        await results.open("s3://elsewhere/7.mp4", size=None, sha256=None)
