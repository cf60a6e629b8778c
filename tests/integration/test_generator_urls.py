"""A generator's URL is not a way in: what ``[generator_urls]`` lets a copy reach (https://,
public addresses, checked on the address the name resolves to, at every connection and
redirect), what must arrive (a video), how long a copy may take (the job's timeout: a
dropped or stalled connection resumes while it makes progress), and what errors show of a
signed URL (never its query).

The "CDN" is an HTTP server on loopback, scripted per test. Loopback is refused by default
(one test proves it), so the others allow it as an operator would: ``allow_networks``, with
``allow_http``. Names resolve through a resolver the test passes in (or ``localhost``):
nothing here leaves this machine.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.integration.test_results import asset_row, running
from tests.integration.test_worker import FAST, add
from tests.support import FakeClock, eventually, rows
from vidretry.config import GeneratorUrlsConfig, parse_config, resolve_paths
from vidretry.db import connection
from vidretry.errors import HandlerError
from vidretry.results.base import MIB, Stored
from vidretry.results.configured import configured
from vidretry.results.files import FileStore
from vidretry.results.keeping import Results
from vidretry.results.urls import MAX_REDIRECTS, Policy, UrlCopier, UrlRefused, looks_like_video

LOOPBACK = GeneratorUrlsConfig(allow_http=True, allow_networks=("127.0.0.1/32",))
MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


def video(size: int) -> bytes:
    """An MP4's first box, then ``size`` bytes in all that never repeat in a short stretch."""
    body = hashlib.shake_256(b"video").digest(size)
    return (MP4 + body)[:size]


@dataclass
class Script:
    """What the CDN does: ``files`` by path; per answer at most ``drop_after`` bytes of the
    body, then the connection is cut (``drops`` times, then whole answers); ``stall_after``
    bytes, then nothing (until the test ends); ``trickle`` bytes every ``trickle_every``
    seconds; ``redirects`` path → Location; ``etag``; ``ranges`` (False: a server that sends
    the whole file whatever the Range); ``status`` path → an error status."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: int | None = None
    drops: int = 1_000_000
    stall_after: int | None = None
    trickle: int | None = None
    trickle_every: float = 0.0
    redirects: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    new_etag_after_a_drop: str | None = None  # the video changes once a connection is cut
    ranges: bool = True
    status: dict[str, int] = field(default_factory=dict)
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class Cdn:
    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.script = Script()
        self.ended = threading.Event()
        script, ended = self, self.ended

        class Answer(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                s = script.script
                path = self.path
                s.seen.append((path, self.headers.get("Range")))
                if path in s.redirects:
                    self.send_response(302)
                    self.send_header("Location", s.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path.split("?")[0] in s.status:
                    self.send_response(s.status[path.split("?")[0]])
                    self.send_header("Content-Length", "6")
                    self.end_headers()
                    self.wfile.write(b"denied")
                    return
                data = s.files.get(path.split("?")[0])
                if data is None:
                    self.send_error(404)
                    return
                start, asked = 0, self.headers.get("Range")
                if asked and s.ranges:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                if s.etag:
                    self.send_header("ETag", s.etag)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if s.stall_after is not None:
                    self.wfile.write(body[: s.stall_after])
                    self.wfile.flush()
                    s.stall_after = 0  # resumed answers bring nothing
                    ended.wait(30)
                    return
                if s.trickle:
                    for i in range(0, len(body), s.trickle):
                        self.wfile.write(body[i : i + s.trickle])
                        self.wfile.flush()
                        if ended.wait(s.trickle_every):
                            return
                    return
                if s.drop_after is not None and s.drops > 0 and len(body) > s.drop_after:
                    s.drops -= 1
                    s.etag = s.new_etag_after_a_drop or s.etag
                    self.wfile.write(body[: s.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hung up mid-answer: what several tests do

        self.server = Server((address, port), Answer)
        self.port = int(self.server.server_address[1])
        self.address = address
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.address}:{self.port}{path}"

    def stop(self) -> None:
        self.ended.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cdn() -> Iterator[Cdn]:
    server = Cdn()
    yield server
    server.stop()


def resolver(table: dict[str, Sequence[str]], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Names resolved by the test: ``table[name]``, one answer per call when it is a list of
    lists (a name that changes its answer: DNS rebinding)."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        answer = table[host]
        if answer and isinstance(answer[0], list):
            return answer.pop(0) if len(answer) > 1 else answer[0]  # type: ignore[return-value]
        return answer

    return resolve


async def copy(url: str, config: GeneratorUrlsConfig = LOOPBACK, **options: object) -> bytes:
    copier = UrlCopier(config, **options)  # type: ignore[arg-type]
    return b"".join([bytes(chunk) async for chunk in copier.chunks(url)])


def results_with(
    tmp_path: Path, config: GeneratorUrlsConfig = LOOPBACK, **options: object
) -> Results:
    store = tmp_path / "videos"
    copier = UrlCopier(config, **options)  # type: ignore[arg-type]
    return Results(FileStore(store), scratch=tmp_path / "output", fetch=copier.chunks)


async def test_by_default_only_https_to_the_public_internet(cdn: Cdn) -> None:
    """Out of the box the loopback CDN is out of reach: plain http:// is refused, and so
    is loopback over https (``localhost`` resolved by the system, locally)."""
    cdn.script.files["/v.mp4"] = video(1000)
    default = GeneratorUrlsConfig()
    with pytest.raises(
        UrlRefused, match=r"only https:// URLs are copied \(\[generator_urls\] allow_http"
    ):
        await copy(cdn.url("/v.mp4"), default)
    with pytest.raises(UrlRefused, match=r"^localhost is (127\.0\.0\.1|::1), a loopback address"):
        await copy(f"https://localhost:{cdn.port}/v.mp4", default)
    with pytest.raises(UrlRefused, match=r"^127\.0\.0\.1 is a loopback address: refused"):
        await copy(f"https://127.0.0.1:{cdn.port}/v.mp4", default)  # the address said once
    with pytest.raises(UrlRefused, match=re.escape("127.0.0.1 is a loopback address: refused")):
        await copy(cdn.url("/v.mp4"), replace(default, allow_http=True))
    assert cdn.script.seen == []  # never connected to


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "a private"), ("192.168.0.10", "a private"), ("172.16.5.4", "a private"),
        ("127.0.0.53", "a loopback"), ("::1", "a loopback"), ("0.0.0.0", "an unspecified"),
        ("::ffff:127.0.0.1", "a loopback"), ("169.254.10.10", "a link-local"),
        ("fe80::1", "a link-local"), ("fd12:3456::1", "a private"),
        ("100.64.1.1", "a private"), ("224.0.0.1", "a multicast"),
        ("169.254.169.254", "a cloud metadata"), ("fd00:ec2::254", "a cloud metadata"),
        ("100.100.100.200", "a cloud metadata"),
    ],
)  # fmt: skip
async def test_addresses_off_the_public_internet_are_refused_where_the_name_resolves(
    address: str, kind: str
) -> None:
    """Checked on the resolved address (the name says nothing), before any connection; a
    name with one such address among public ones is refused too."""
    config = GeneratorUrlsConfig()
    table = {"cdn.example": [address], "mixed.example": ["93.184.215.14", address]}
    for name in table:
        with pytest.raises(UrlRefused, match=f"{name} is .*, {kind} address"):
            await copy(f"https://{name}/v.mp4", config, resolver=resolver(table))
    # An operator's allow_networks reaches a provider inside the network; never metadata.
    everything = replace(config, allow_networks=("0.0.0.0/0", "::/0"))
    policy = Policy(everything)
    if kind == "a cloud metadata":
        with pytest.raises(UrlRefused, match="cloud metadata address"):
            policy.check_address("cdn.example", address)
    else:
        policy.check_address("cdn.example", address)


async def test_a_cdn_the_operator_allows_is_copied_byte_for_byte(cdn: Cdn, tmp_path: Path) -> None:
    data = video(3 * MIB + 17)
    cdn.script.files["/out/v.mp4"] = data
    results = results_with(tmp_path, resolver=resolver({"cdn.test": ["127.0.0.1"]}))
    stored = await results.keep(
        cdn.url("/out/v.mp4?sig=1", "cdn.test"), "1-g0-ab.mp4", url_timeout=30
    )
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).digest())
    assert (tmp_path / "videos" / "1-g0-ab.mp4").read_bytes() == data


async def test_only_the_hosts_listed_when_a_list_is_set(cdn: Cdn) -> None:
    cdn.script.files["/v.mp4"] = video(2000)
    cdn.script.redirects["/away"] = cdn.url("/v.mp4", "evil.test")
    table = {name: ["127.0.0.1"] for name in ("cdn.test", "a.b.cdn.test", "evil.test", "xcdn.test")}
    listed = replace(LOOPBACK, hosts=("cdn.test", "*.cdn.test"))
    for name in ("cdn.test", "a.b.cdn.test"):
        assert await copy(cdn.url("/v.mp4", name), listed, resolver=resolver(table)) == video(2000)
    for url in (
        cdn.url("/v.mp4", "evil.test"),
        cdn.url("/v.mp4", "xcdn.test"),
        cdn.url("/away", "cdn.test"),
    ):
        with pytest.raises(UrlRefused, match=r"is not one of \[generator_urls\] hosts"):
            await copy(url, listed, resolver=resolver(table))
    assert cdn.script.seen.count(("/v.mp4", None)) == 2  # the refused ones never asked


async def test_every_redirect_is_checked_and_there_are_at_most_five(cdn: Cdn) -> None:
    inside = Cdn("127.0.0.2", cdn.port)  # another service on this machine, same port
    try:
        inside.script.files["/secret"] = video(100)
        data = video(5000)
        cdn.script.files["/v.mp4"] = data
        for hop in range(MAX_REDIRECTS + 1):
            cdn.script.redirects[f"/hop{hop}"] = (
                f"/hop{hop + 1}" if hop < MAX_REDIRECTS else "/v.mp4"
            )
        cdn.script.redirects["/inside"] = inside.url("/secret")
        cdn.script.redirects["/metadata"] = "http://169.254.169.254/latest/meta-data/"
        cdn.script.redirects["/https-to-http"] = cdn.url("/v.mp4")
        assert await copy(cdn.url("/hop1")) == data  # five redirects
        with pytest.raises(HandlerError, match=f"more than {MAX_REDIRECTS} redirects"):
            await copy(cdn.url("/hop0"))
        with pytest.raises(UrlRefused, match=re.escape("127.0.0.2 is a loopback address: refused")):
            await copy(cdn.url("/inside"))
        with pytest.raises(
            UrlRefused, match=re.escape("169.254.169.254 is a cloud metadata address")
        ):
            await copy(cdn.url("/metadata"))
        assert inside.script.seen == []
    finally:
        inside.stop()


async def test_each_connection_goes_to_the_address_just_checked(cdn: Cdn) -> None:
    """DNS rebinding: the name resolves to the allowed CDN, then — for the connection that
    resumes the copy — to another address of this machine. That connection is refused:
    every connection resolves, checks and connects to what it checked."""
    inside = Cdn("127.0.0.2", cdn.port)
    try:
        inside.script.files["/v.mp4"] = b"internal" * 1000
        cdn.script.files["/v.mp4"] = video(100_000)
        cdn.script.drop_after = 10_000
        calls: list[str] = []
        rebinding = resolver({"cdn.test": [["127.0.0.1"], ["127.0.0.2"]]}, calls)
        with pytest.raises(
            UrlRefused, match=re.escape("cdn.test is 127.0.0.2, a loopback address")
        ):
            await copy(cdn.url("/v.mp4", "cdn.test"), resolver=rebinding)
        assert calls == ["cdn.test", "cdn.test"]
        assert inside.script.seen == []
    finally:
        inside.stop()


async def test_what_arrives_must_be_a_video_before_anything_is_kept(
    cdn: Cdn, tmp_path: Path
) -> None:
    cdn.script.files["/error.mp4"] = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
    cdn.script.files["/tiny.mp4"] = MP4 + b"\x00" * 40  # shorter than what is sniffed: whole
    results = results_with(tmp_path)
    with pytest.raises(
        HandlerError, match=r"answered is not a video \(it begins b'<!DOCTYPE html><'\)"
    ):
        await results.keep(cdn.url("/error.mp4"), "1-g0-ab.mp4", url_timeout=30)
    assert not (tmp_path / "videos").exists() or list((tmp_path / "videos").iterdir()) == []
    stored = await results.keep(cdn.url("/tiny.mp4"), "2-g0-ab.mp4", url_timeout=30)
    assert stored.size == len(MP4) + 40
    for head in (MP4, b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", b"RIFF\x00\x00\x00\x00AVI LIST",
                 (b"\x47" + b"\x00" * 187) * 2, b"\x00\x00\x01\xba\x44"):  # fmt: skip
        assert looks_like_video(head), head[:12]
    for head in (b"GIF89a", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d", b'{"error": "x"}', b""):
        assert not looks_like_video(head), head


@pytest.mark.parametrize("etag", [None, '"v1"'])
async def test_a_copy_that_keeps_dropping_resumes_while_it_makes_progress(
    cdn: Cdn, etag: str | None
) -> None:
    """Cut after every 256 KiB: a 2 MiB video takes eight connections, each resuming where
    the last stopped (obstore's client gave up after three resumes, however much each
    brought)."""
    data = video(2 * MIB)
    cdn.script.files["/v.mp4"] = data
    cdn.script.drop_after = 256 * 1024
    cdn.script.etag = etag
    assert await copy(cdn.url("/v.mp4")) == data
    assert [asked for _, asked in cdn.script.seen] == [None] + [
        f"bytes={n * 256 * 1024}-" for n in range(1, 8)
    ]


async def test_a_server_that_answers_the_whole_video_again_is_read_past_the_copied_part(
    cdn: Cdn,
) -> None:
    data = video(600_000)
    cdn.script.files["/v.mp4"] = data
    cdn.script.drop_after, cdn.script.drops, cdn.script.ranges = 100_000, 2, False
    assert await copy(cdn.url("/v.mp4")) == data
    assert len(cdn.script.seen) == 3


async def test_a_video_that_changes_while_it_is_copied_fails_the_attempt(cdn: Cdn) -> None:
    cdn.script.files["/v.mp4"] = video(300_000)
    cdn.script.drop_after, cdn.script.drops, cdn.script.etag = 100_000, 1, '"v1"'
    cdn.script.ranges = False  # ignores If-Range too: the whole of a new version
    cdn.script.new_etag_after_a_drop = '"v2"'
    with pytest.raises(HandlerError, match="changed while it was copied"):
        await copy(cdn.url("/v.mp4"))


async def test_a_stalled_copy_says_which_limit_ended_it(cdn: Cdn, tmp_path: Path) -> None:
    """Nothing for ``stall_seconds``: the connection counts as dropped and the copy resumes;
    resumes that bring nothing end it, saying so. A copy still trickling when the job's
    ``[worker] timeout_seconds`` is up ends with that, saying so."""
    cdn.script.files["/stalls.mp4"] = video(50_000)
    cdn.script.stall_after = 20_000
    with pytest.raises(HandlerError) as stalled:
        await copy(cdn.url("/stalls.mp4"), stall_seconds=0.3)
    assert str(stalled.value) == (
        f"copying {cdn.url('/stalls.mp4')}: no answer within 0.3s, 3 times in a row without a "
        "byte (20,000 bytes copied)"
    )
    assert [asked for _, asked in cdn.script.seen] == [None] + ["bytes=20000-"] * 3

    slow = Cdn()
    try:
        slow.script.files["/slow.mp4"] = video(200_000)
        slow.script.trickle, slow.script.trickle_every = 1000, 0.05
        with pytest.raises(HandlerError) as timed_out:
            await results_with(tmp_path).keep(slow.url("/slow.mp4"), "1-g0-ab.mp4", url_timeout=1)
        assert str(timed_out.value) == (
            "copying the generator's URL took over 1s, the job's limit ([worker] timeout_seconds)"
        )
    finally:
        slow.stop()


async def test_a_copy_longer_than_any_one_connection_may_wait_is_no_failure(cdn: Cdn) -> None:
    """No cap but the job's timeout: a provider that sends slowly, but sends, is copied
    however long it takes (here many times ``stall_seconds``)."""
    data = video(40_000)
    cdn.script.files["/v.mp4"] = data
    cdn.script.trickle, cdn.script.trickle_every = 2000, 0.1
    started = time.monotonic()
    assert await copy(cdn.url("/v.mp4"), stall_seconds=0.5) == data
    assert time.monotonic() - started > 3 * 0.5


async def test_a_signed_urls_query_never_reaches_an_error(cdn: Cdn) -> None:
    cdn.script.status["/private/v.mp4"] = 403
    signed = cdn.url("/private/v.mp4?X-Amz-Signature=S3CR3T&X-Amz-Credential=AKIA%2Fx")
    with pytest.raises(HandlerError) as refused:
        await copy(signed)
    assert str(refused.value) == (f"the generator's URL answered 403: {cdn.url('/private/v.mp4')}")
    with pytest.raises(HandlerError) as gone:
        await copy(cdn.url("/missing.mp4?sig=S3CR3T"))
    assert "S3CR3T" not in str(gone.value)


@pytest.mark.parametrize(
    ("signed", "shown"),
    [
        ("https://cdn.example/v.mp4?X-Amz-Signature=S3CR3T&X-Amz-Credential=AKIA",
         "https://cdn.example/v.mp4?…"),
        ("https://u:S3CR3T@cdn.example/v.mp4?token=abc", "https://…@cdn.example/v.mp4?…"),
    ],
)  # fmt: skip
async def test_a_leaked_query_is_cut_from_last_error_the_history_and_the_logs(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, signed: str, shown: str
) -> None:
    """Whatever quotes a signed URL or one with a password (a provider's client, the
    store's client), the worker records and logs it without them: last_error, the history
    (which the console, ``show`` and the admins' alert read), the log."""

    async def leaky(url: str) -> AsyncIterator[bytes]:
        raise HandlerError(f"Error performing GET {url} - Server returned 403 Forbidden")
        yield b""  # pragma: no cover

    config = replace(
        FAST, output_dir=tmp_path, handler="python:tests.sample_handlers:returns",
        backoff_base_seconds=600,
    )  # fmt: skip
    (asset,) = await add(db_url, "Маша", result=signed)
    results = Results(FileStore(tmp_path), scratch=tmp_path, fetch=leaky)
    async with await connection.connect(db_url) as conn:

        async def tried() -> bool:
            return (await asset_row(conn, asset))["last_error"] is not None

        with caplog.at_level(logging.INFO):
            async with running(db_url, config, results, FakeClock()):
                assert await eventually(tried, within=15)
        row = await asset_row(conn, asset)
        history = await rows(conn, "SELECT detail FROM job_events WHERE detail IS NOT NULL")
    expected = f"Error performing GET {shown} - Server returned 403 Forbidden"
    assert row["last_error"] == expected
    assert [event["detail"] for event in history] == [expected]
    assert expected in caplog.text
    assert "S3CR3T" not in caplog.text


async def test_a_worker_copies_a_handlers_url_through_the_configured_policy(
    db_url: str, tmp_path: Path, cdn: Cdn
) -> None:
    """``[generator_urls]`` as an operator writes it, through ``configured``: the loopback
    CDN allowed, a name resolved by the test."""
    data = video(MIB)
    cdn.script.files["/made.mp4"] = data
    raw = {
        "worker": {"output_dir": "out"},
        "generator_urls": {"allow_http": True, "allow_networks": ["127.0.0.1"],
                           "hosts": ["cdn.test"]},
    }  # fmt: skip
    results = configured(
        resolve_paths(parse_config(raw), tmp_path), resolver=resolver({"cdn.test": ["127.0.0.1"]})
    )
    config = replace(
        FAST, output_dir=tmp_path / "out", handler="python:tests.sample_handlers:returns"
    )
    (asset,) = await add(db_url, "Маша", result=cdn.url("/made.mp4?sig=x", "cdn.test"))
    async with await connection.connect(db_url) as conn:

        async def available() -> bool:
            return (await asset_row(conn, asset))["state"] == "available"

        async with running(db_url, config, results, FakeClock()):
            assert await eventually(available, within=15)
        row = await asset_row(conn, asset)
    assert isinstance(row["result"], str)
    assert row["result_size"] == len(data)
    kept = Stored(row["result"], len(data), hashlib.sha256(data).digest())
    assert Path(kept.uri.removeprefix("file://")).read_bytes() == data
