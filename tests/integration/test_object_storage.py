"""Videos in S3-compatible object storage, against a real server (SeaweedFS's ``weed mini``
on loopback, tests/s3server.py): what goes up comes back byte for byte, in bounded pieces;
an upload that cannot finish leaves nothing behind; the store's errors are told apart (a
missing video, an outage, refused credentials); a generator's URL is copied in."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import random
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import obstore
import pytest

from tests.integration.test_generator_urls import Cdn
from tests.integration.test_generator_urls import video as url_video
from tests.integration.test_results import asset_row, running
from tests.integration.test_worker import FAST, add
from tests.s3server import ACCESS_KEY, SECRET_KEY, WeedS3, started
from tests.support import FakeClock, eventually
from vidretry.app.doctor import Check, Verdict, examine
from vidretry.config import ConfigError, load_config
from vidretry.db import connection
from vidretry.errors import HandlerError
from vidretry.results.base import (
    CHUNK,
    MIB,
    ResultCorrupt,
    ResultMissing,
    ResultRefused,
    ResultTooBig,
    StoreMisaddressed,
    StoreUnavailable,
)
from vidretry.results.configured import configured
from vidretry.results.keeping import Results
from vidretry.results.remote import S3ResultStore

# Telegram's upload part: the notifier reads a video in pieces of this size.
TELEGRAM_PART = 512 * 1024


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedS3]:
    server = started(tmp_path_factory.mktemp("weed"))
    yield server
    server.stop()


def config_naming(weed: WeedS3, tmp_path: Path, **storage: object) -> Path:
    """A config file whose ``[storage]`` is this server (readable by others, as a careless
    operator leaves it), and which lets generators' URLs reach the loopback CDN."""
    settings = weed.settings(**storage).items()
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings if v is not None)
    config = tmp_path / "vidretry.toml"
    config.write_text(
        f'[worker]\noutput_dir = "videos"\n[storage]\n{table}\n'
        '[generator_urls]\nallow_http = true\nallow_networks = ["127.0.0.1"]\n'
    )
    config.chmod(0o644)
    return config


def results_for(weed: WeedS3, tmp_path: Path, **storage: object) -> Results:
    """What ``vidretry worker`` and ``vidretry notifier`` build from a config naming it."""
    return configured(load_config(config_naming(weed, tmp_path, **storage)))


def video_bytes(size: int, seed: int = 7) -> bytes:
    """An MP4's first box, then random bytes (what a URL copy checks is the container)."""
    return (b"\x00\x00\x00\x18ftypmp42" + random.Random(seed).randbytes(size))[:size]


async def read_back(results: Results, uri: str, size: int | None, sha256: bytes | None) -> bytes:
    download = await results.open(uri, size=size, sha256=sha256)
    parts = []
    while part := await download.read(TELEGRAM_PART):
        assert len(part) == TELEGRAM_PART or len(b"".join(parts)) + len(part) == download.size
        parts.append(part)
    await download.aclose()
    return b"".join(parts)


async def test_a_video_goes_up_in_parts_and_comes_back_byte_for_byte(
    weed: WeedS3, tmp_path: Path
) -> None:
    results = results_for(weed, tmp_path)
    data = video_bytes(2 * CHUNK + 12345)  # three parts of a multipart upload
    written = results.scratch / "1-g0.mp4"
    written.parent.mkdir(parents=True)
    written.write_bytes(data)

    stored = await results.keep(str(written), "1-g0-a1b2c3d4.mp4", url_timeout=60)
    assert stored.uri == "s3://videos/vidretry/1-g0-a1b2c3d4.mp4"
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).digest())
    assert not written.exists()  # the store holds it: the worker's disk is free again
    meta = obstore.head(weed.client(), "vidretry/1-g0-a1b2c3d4.mp4")
    assert meta["size"] == len(data)
    assert await read_back(results, stored.uri, stored.size, stored.sha256) == data

    obstore.put(weed.client(), "vidretry/1-g0-a1b2c3d4.mp4", data[:-1] + b"\x00")
    with pytest.raises(ResultCorrupt, match="SHA-256 differs"):
        await read_back(results, stored.uri, stored.size, stored.sha256)

    assert results.kept_by_vidretry(stored.uri)
    await results.delete([stored.uri])
    with pytest.raises(ResultMissing, match="video missing: s3://videos/vidretry/1-g0"):
        await results.open(stored.uri, size=None, sha256=None)
    await results.delete([stored.uri])  # already gone: no error


async def test_an_upload_that_cannot_finish_leaves_no_object_and_no_parts(
    weed: WeedS3, tmp_path: Path
) -> None:
    """A stream that grows past the limit is stopped mid-upload: the multipart upload that
    had begun is aborted, so no half video and no orphaned parts stay in the bucket."""
    results = results_for(weed, tmp_path)
    store = results.store
    assert isinstance(store, S3ResultStore)
    two_parts_sent = asyncio.Event()
    go_on = asyncio.Event()

    async def generator_stream() -> AsyncIterator[bytes]:
        for part in range(4):
            yield video_bytes(CHUNK, seed=part)
            if part == 1:
                two_parts_sent.set()
                await go_on.wait()

    upload = asyncio.create_task(
        store.put_chunks(generator_stream(), "2-g0-a1b2c3d4.mp4", limit=3 * CHUNK)
    )
    await asyncio.wait_for(two_parts_sent.wait(), 30)
    deadline = time.monotonic() + 30
    while not multipart_uploads(weed) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert multipart_uploads(weed), "the upload is multipart and under way"
    go_on.set()
    with pytest.raises(ResultTooBig, match="over 24 MiB"):
        await upload
    assert multipart_uploads(weed) == []
    assert [o["path"] for o in obstore.list(weed.client(), "vidretry/2-").collect()] == []


async def test_a_url_copy_past_the_jobs_time_says_so_and_leaves_no_upload_open(
    weed: WeedS3, tmp_path: Path
) -> None:
    """A provider that trickles (1 KB every half second) into the S3 store: when the job's
    ``timeout_seconds`` is up the copy ends with the error that says so, and the multipart
    upload begun for it is aborted before ``keep`` returns; nothing goes on reading the
    provider's stream."""
    slow = Cdn()
    try:
        slow.script.files["/slow.mp4"] = url_video(1_000_000)
        slow.script.trickle, slow.script.trickle_every = 1000, 0.5
        results = results_for(weed, tmp_path)
        with pytest.raises(HandlerError) as timed_out:
            await results.keep(slow.url("/slow.mp4"), "8-g0-a1b2c3d4.mp4", url_timeout=2)
        assert str(timed_out.value) == (
            "copying the generator's URL took over 2s, the job's limit ([worker] timeout_seconds)"
        )
        assert multipart_uploads(weed) == []
        assert [o["path"] for o in obstore.list(weed.client(), "vidretry/8-").collect()] == []
    finally:
        slow.stop()


async def test_an_upload_cancelled_mid_stream_is_aborted_and_its_stream_closed(
    weed: WeedS3, tmp_path: Path
) -> None:
    """A worker stopping (its job cancelled) while a video streams in: the upload is
    aborted before the cancellation goes on, and the stream is no longer being read, so the
    one who gave it can close it."""
    store = results_for(weed, tmp_path).store
    waiting = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        yield video_bytes(CHUNK + 1)  # a first part goes up
        waiting.set()
        await asyncio.sleep(3600)
        yield b"never"

    source = stream()
    upload = asyncio.create_task(store.put_chunks(source, "9-g0-a1b2c3d4.mp4", limit=4 * CHUNK))
    await asyncio.wait_for(waiting.wait(), 30)
    deadline = time.monotonic() + 30
    while not multipart_uploads(weed) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert multipart_uploads(weed), "the upload is multipart and under way"
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert multipart_uploads(weed) == []
    await source.aclose()  # not "already running"


def multipart_uploads(weed: WeedS3) -> list[str]:
    """The multipart uploads under way in the bucket, as SeaweedFS's filer lists them."""
    request = urllib.request.Request(
        f"{weed.filer}/buckets/{weed.bucket}/.uploads/", headers={"Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        entries = json.load(answer)["Entries"] or []
    return [entry["FullPath"] for entry in entries]


def bucket_listing(weed: WeedS3) -> dict[str, list[tuple[str, int]]]:
    """Every bucket of the server and its objects (key, size), as AWS's own SDK (boto3, an
    S3 client independent of vidretry's) sees them, addressing path-style explicitly."""
    import boto3
    from botocore.config import Config as BotoConfig

    s3 = boto3.client(
        "s3",
        endpoint_url=weed.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    listing = {}
    for bucket in s3.list_buckets()["Buckets"]:
        objects = s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])
        listing[bucket["Name"]] = [(o["Key"], o["Size"]) for o in objects]
    return listing


async def test_with_the_settings_a_user_types_a_video_lands_where_its_uri_says(
    weed: WeedS3, tmp_path: Path
) -> None:
    """The issue's configuration: a bucket and a prefix, a custom endpoint, path_style and
    region left out. The video is in bucket "videos" under "results/", as its URI says,
    and no bucket was made of the prefix."""
    results = results_for(weed, tmp_path, url="s3://videos/results")
    data = video_bytes(1000, seed=11)
    stored = await results.store.put_chunks(chunks(data), "1-g0-a1b2c3d4.mp4", limit=MIB)

    assert stored.uri == "s3://videos/results/1-g0-a1b2c3d4.mp4"
    listing = bucket_listing(weed)
    assert ("results/1-g0-a1b2c3d4.mp4", len(data)) in listing["videos"]
    assert "results" not in listing
    assert await read_back(results, stored.uri, stored.size, stored.sha256) == data


async def test_the_stores_errors_are_told_apart(weed: WeedS3, tmp_path: Path) -> None:
    """A missing video is the video's problem (its message fails for good); refused
    credentials and an unreachable server are outages (try again later), each one line."""
    results = results_for(weed, tmp_path)
    with pytest.raises(ResultMissing):
        await results.open("s3://videos/vidretry/never-kept.mp4", size=None, sha256=None)

    wrong = results_for(weed, tmp_path, secret_access_key="not-the-secret")
    with pytest.raises(StoreUnavailable) as refused:
        await wrong.store.put_chunks(chunks(b"x"), "3.mp4", limit=MIB)
    assert "\n" not in str(refused.value)
    assert "cannot store s3://videos/vidretry/3.mp4" in str(refused.value)

    nobody = results_for(weed, tmp_path, endpoint_url=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot read s3://videos/vidretry/4\.mp4"):
        await nobody.open("s3://videos/vidretry/4.mp4", size=None, sha256=None)
    # The client's own retries end within seconds: the outage is vidretry's to ride out.
    assert time.monotonic() - started < 60


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A generator's CDN on loopback: files of a directory over HTTP (404 for others)."""
    served = tmp_path / "cdn"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


async def test_a_generators_url_is_copied_into_the_store(
    weed: WeedS3, tmp_path: Path, provider: tuple[str, Path]
) -> None:
    cdn, served = provider
    data = video_bytes(CHUNK + 999, seed=3)
    (served / "out.mp4").write_bytes(data)
    results = results_for(weed, tmp_path)
    signed = f"{cdn}/out.mp4?X-Signature=secret-token"
    stored = await results.keep(signed, "5-g0-a1b2c3d4.mp4", url_timeout=60)
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).digest())
    assert await read_back(results, stored.uri, stored.size, stored.sha256) == data

    with pytest.raises(HandlerError, match="gone \\(404\\)") as gone:
        await results.keep(f"{cdn}/expired.mp4?X-Signature=secret-token", "6.mp4", url_timeout=60)
    assert "secret-token" not in str(gone.value)  # a signed URL's query is its credential

    small = results_for(weed, tmp_path, max_video_mib=8)
    with pytest.raises(ResultTooBig, match="over 8 MiB"):
        await small.keep(signed, "7-g0-a1b2c3d4.mp4", url_timeout=60)
    assert [o["path"] for o in obstore.list(weed.client(), "vidretry/7-").collect()] == []


async def test_doctor_says_whether_the_store_answers_and_never_prints_its_secret(
    weed: WeedS3, tmp_path: Path
) -> None:
    good = await doctor(tmp_path, weed)
    assert good["storage"].verdict is Verdict.OK
    assert good["storage"].detail == (
        f"s3://videos/vidretry/ at {weed.endpoint}/videos (the bucket lists the prefix as its own)"
    )
    assert good["config"].verdict is Verdict.WARN
    assert "holds the store's secret key and other users can read it" in good["config"].detail

    wrong = await doctor(tmp_path, weed, secret_access_key="not-the-secret")
    assert wrong["storage"].verdict is Verdict.FAIL
    assert "refused us a listing (SignatureDoesNotMatch)" in wrong["storage"].detail
    for found in (good, wrong):
        assert not any(SECRET_KEY in check.detail for check in found.values())
    # A prefix with a space: the client's URL for it is percent-encoded, and still the
    # bucket's own.
    spaced = await doctor(tmp_path, weed, url="s3://videos/a b")
    assert spaced["storage"].verdict is Verdict.OK, spaced["storage"].detail
    stored = await results_for(weed, tmp_path, url="s3://videos/a b").store.put_chunks(
        chunks(b"x"), "1.mp4", limit=MIB
    )
    assert stored.uri == "s3://videos/a b/1.mp4"
    assert ("a b/1.mp4", 1) in bucket_listing(weed)["videos"]


@pytest.mark.parametrize("path", ["/videos", "/other"])
async def test_an_endpoint_with_a_path_is_refused_before_anything_is_stored(
    weed: WeedS3, tmp_path: Path, path: str
) -> None:
    """The store's address with a path after it: vidretry would put a video in bucket
    "videos" under "videos/results/…", or in a bucket "other" that SeaweedFS makes on the
    first upload. The config is refused at load, naming the key; nothing reaches the store."""
    before = bucket_listing(weed)
    with pytest.raises(ConfigError, match=r"^\[storage\] endpoint_url must be the store's"):
        load_config(config_naming(weed, tmp_path, endpoint_url=f"{weed.endpoint}{path}"))
    assert bucket_listing(weed) == before


async def test_a_prefix_the_client_cannot_address_is_an_outage_not_a_failed_attempt(
    weed: WeedS3, tmp_path: Path
) -> None:
    """Refused at load (tests/unit/test_s3_addressing.py); a store built past that check
    (or a name the client parses otherwise) still never charges the generator with the
    client's refusal, nor gives the doctor a traceback: the upload is an outage (the worker
    holds the video, the admins are told), the doctor's check fails saying why. A stream's
    own error stays the stream's."""
    good = results_for(weed, tmp_path).store
    assert isinstance(good, S3ResultStore)
    for prefix in ("a//b/", "../r/"):
        store = S3ResultStore(replace(good.settings, prefix=prefix))
        with pytest.raises(StoreUnavailable, match=r"cannot store s3://videos/.*: Could not parse"):
            await store.put_chunks(chunks(b"x"), "1.mp4", limit=MIB)
        with pytest.raises(StoreMisaddressed, match="the client cannot address"):
            await store.check()

    async def failing() -> AsyncIterator[bytes]:
        yield b"x"
        raise ValueError("the generator's own")

    with pytest.raises(ValueError, match="the generator's own"):
        await good.put_chunks(failing(), "2.mp4", limit=MIB)


async def test_the_uploads_and_the_doctor_sign_with_the_same_credentials(
    weed: WeedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session token in the environment (a shell with an assumed role) beside keys in the
    config file: the token belongs to the environment's keys, and neither the uploads nor
    the doctor send it with the file's. Keys from the environment come with its token, for
    both: a token that does not belong to them fails the doctor as it fails the uploads."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token-of-other-keys")
    results = results_for(weed, tmp_path)
    stored = await results.store.put_chunks(chunks(b"ok"), "1-g0-token.mp4", limit=MIB)
    assert stored.uri == "s3://videos/vidretry/1-g0-token.mp4"
    assert (await doctor(tmp_path, weed))["storage"].verdict is Verdict.OK

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    from_env = results_for(weed, tmp_path, access_key_id=None, secret_access_key=None)
    with pytest.raises(StoreUnavailable, match="cannot store"):
        await from_env.store.put_chunks(chunks(b"no"), "2-g0-token.mp4", limit=MIB)
    found = await doctor(tmp_path, weed, access_key_id=None, secret_access_key=None)
    assert found["storage"].verdict is Verdict.FAIL
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert (await doctor(tmp_path, weed, access_key_id=None, secret_access_key=None))[
        "storage"
    ].verdict is Verdict.OK


async def doctor(tmp_path: Path, weed: WeedS3, **storage: object) -> dict[str, Check]:
    """``vidretry doctor``'s checks, by name, for a config naming the server."""
    config = load_config(config_naming(weed, tmp_path, **storage))
    return {check.name: check for check in await examine(config)}


async def test_a_worker_copies_the_url_its_command_names_into_the_store(
    weed: WeedS3, tmp_path: Path, provider: tuple[str, Path], db_url: str
) -> None:
    """A generator that is a paid API's client: it prints ``result <url>``; the worker copies
    the video into the store before it records the success, with its size and SHA-256."""
    cdn, served = provider
    data = video_bytes(3 * MIB, seed=11)
    (served / "made.mp4").write_bytes(data)
    command = ("sh", "-c", 'echo "progress 100"; echo "result $0"', f"{cdn}/made.mp4?sig=s")
    config = replace(FAST, output_dir=tmp_path / "videos", handler="command", command=command)
    (asset,) = await add(db_url, "Маша")
    async with (
        await connection.connect(db_url) as conn,
        running(db_url, config, results_for(weed, tmp_path), FakeClock()),
    ):

        async def available() -> bool:
            return (await asset_row(conn, asset))["state"] == "available"

        assert await eventually(available, within=30)
        row = await asset_row(conn, asset)
    assert str(row["result"]).startswith("s3://videos/vidretry/")
    assert (row["result_size"], bytes(row["result_sha256"])) == (  # type: ignore[arg-type]
        len(data),
        hashlib.sha256(data).digest(),
    )
    key = str(row["result"]).removeprefix("s3://videos/")
    assert bytes(obstore.get(weed.client(), key).bytes()) == data


async def test_the_store_deletes_and_reads_only_under_its_prefix(
    weed: WeedS3, tmp_path: Path
) -> None:
    """``s3://videos/vidretry``: an object of the same bucket under another prefix is not
    the store's, whatever URI names it; found where it was by an independent client."""
    client = weed.client()
    obstore.put(client, "elsewhere/theirs.mp4", b"not vidretry's")
    results = results_for(weed, tmp_path)
    for uri in ("s3://videos/elsewhere/theirs.mp4", "s3://videos/vidretry/../elsewhere/theirs.mp4"):
        assert not results.kept_by_vidretry(uri)
        with pytest.raises((ResultRefused, ResultMissing)):
            await results.delete([uri])
        with pytest.raises(ResultRefused, match="outside the video store"):
            await results.store.delete([uri])
        with pytest.raises(ResultRefused, match="outside the video store"):
            await results.store.open(uri)
    assert bytes(obstore.get(client, "elsewhere/theirs.mp4").bytes()) == b"not vidretry's"
