"""A generator's URL (a command's ``result https://…`` line, a Python handler's returned
URL): copied into the store at once — a provider deletes its outputs within hours — and never
a way into the worker's network.

What a URL may be is ``[generator_urls]``: ``https://`` (``http://`` only where
``allow_http``), to a host of ``hosts`` when that is set, and to an address on the public
internet — loopback, private, link-local, shared, multicast and cloud-metadata addresses are
refused unless ``allow_networks`` holds them (metadata addresses always). The address is
checked as the connection is made, on what the name resolved to, and the connection is made to
exactly that address, so a name that resolves to a public address when checked and to
``127.0.0.1`` a moment later (DNS rebinding) reaches nothing; every redirect is checked again,
at most ``MAX_REDIRECTS`` of them. The first bytes must be a video container's (MP4/MOV,
WebM/Matroska, AVI, MPEG-TS/PS) before anything is kept.

A copy is as long as it takes within the job's ``[worker] timeout_seconds`` (the caller's
bound): a connection that drops, or sends nothing for ``stall_seconds``, is resumed where it
stopped (``Range``, checked by ``If-Range``) for as long as each try brings bytes. Errors name
the URL without its query (a signed URL's credential) and the limit that was hit.

HTTP is httpcore's (encode's HTTP/1.1 core of httpx), given a network backend of our own: the
only place where the address is chosen.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpcore

from vidretry.config import GeneratorUrlsConfig
from vidretry.errors import HandlerError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (the system's resolver; tests pass their own).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

MAX_REDIRECTS = 5
CONNECT_SECONDS = 10.0
# No byte for this long: the connection counts as dropped, and the copy resumes.
STALL_SECONDS = 30.0
# Resumes in a row that bring no byte before the copy gives up.
MAX_IDLE_RESUMES = 3
# Enough of the start to tell a video container (an MPEG-TS packet is 188 bytes).
SNIFF = 512

# Instance metadata services: never a provider's CDN, whatever allow_networks says.
METADATA: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "168.63.129.16",
        "192.0.0.192",
        "fd00:ec2::254",
    )
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class UrlRefused(HandlerError):
    """The generator's URL (or a redirect) is not one ``[generator_urls]`` allows."""


def shown(url: str) -> str:
    """A URL as errors and logs show it: no user, no password, no query (a signed URL's
    credential), no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<an unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:200]


class Policy:
    """``[generator_urls]``, parsed once: which URLs, hosts and addresses a copy may reach."""

    def __init__(self, config: GeneratorUrlsConfig) -> None:
        self.hosts = tuple(host.lower() for host in config.hosts)
        self.allow_http = config.allow_http
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in config.allow_networks
        )

    def check_url(self, url: str) -> SplitResult:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (a bad port raises)
        except ValueError:
            raise UrlRefused(f"the generator's URL cannot be parsed: {shown(url)}") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            also = "" if self.allow_http else " ([generator_urls] allow_http = true for http://)"
            raise UrlRefused(f"only https:// URLs are copied{also}, got {shown(url)}")
        if not parts.hostname:
            raise UrlRefused(f"the generator's URL names no host: {shown(url)}")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused(f"a URL with a user or password is refused: {shown(url)}")
        host = parts.hostname.rstrip(".")
        if self.hosts and not any(_host_matches(host, pattern) for pattern in self.hosts):
            raise UrlRefused(f"{host} is not one of [generator_urls] hosts: {shown(url)}")
        return parts

    def check_address(self, host: str, address: str) -> Address:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone is no part of it
        seen = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        # "cdn.test is 127.0.0.2, a loopback address"; an address given as one is said once.
        named = f"{host} is" if host == str(seen) else f"{host} is {seen},"
        if seen in METADATA or ip in METADATA:
            raise UrlRefused(f"{named} a cloud metadata address: refused")
        if any(seen in network for network in self.networks):
            return ip
        why = _not_public(seen)
        if why:
            raise UrlRefused(
                f"{named} {why} address: refused (a generator's URL must reach the public "
                "internet, or an address of [generator_urls] allow_networks)"
            )
        return ip


def _host_matches(host: str, pattern: str) -> bool:
    """``cdn.example.com`` is itself; ``*.example.com`` is every name below it."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _not_public(ip: Address) -> str | None:
    """What kind of address ``ip`` is when it is not on the public internet."""
    embedded = None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    if ip.is_unspecified:
        return "an unspecified"
    if ip.is_loopback:
        return "a loopback"
    if ip.is_link_local:
        return "a link-local"
    if ip.is_multicast:
        return "a multicast"
    if ip.is_private or not ip.is_global:
        return "a private"
    if embedded is not None and _not_public(embedded):
        return "a private (embedded)"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, choosing the address: the name is resolved here, every
    address it resolves to is checked, and the connection goes to a checked address (TLS
    still verifies the certificate against the name)."""

    def __init__(self, policy: Policy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.strip("[]")
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
            addresses: Sequence[str] = [name]
        except ValueError:
            try:
                async with asyncio.timeout(timeout):
                    addresses = await self.resolver(name, port)
            except (OSError, TimeoutError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {name}: {exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{name} resolves to no address")
        # A name that resolves to a refused address is refused, whatever else it names.
        checked = [str(self.policy.check_address(name, a)) for a in addresses]
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in checked:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )  # fmt: skip
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("a generator's URL never reaches a unix socket")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def looks_like_video(head: bytes) -> bool:
    """Whether ``head``, a file's first bytes, starts a video container: ISO BMFF (MP4,
    MOV, M4V, 3GP: a first box ``ftyp``, or QuickTime's ``moov``/``mdat``/``wide``/
    ``free``), Matroska/WebM (EBML), AVI (RIFF), an MPEG transport or program stream."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"\x00\x00\x01\xba":
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UrlCopier:
    """``chunks(url)``: the video at a generator's URL, as it arrives."""

    def __init__(
        self,
        config: GeneratorUrlsConfig,
        *,
        resolver: Resolver = system_resolver,
        stall_seconds: float = STALL_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = Policy(config)
        self.resolver = resolver
        self.stall_seconds = stall_seconds
        self.ssl_context = ssl_context

    async def chunks(self, url: str) -> AsyncIterator[bytes]:
        self.policy.check_url(url)
        async with httpcore.AsyncConnectionPool(
            ssl_context=self.ssl_context,
            network_backend=_CheckedBackend(self.policy, self.resolver),
            max_connections=1,
        ) as pool:
            copy = _Copy(self, pool, url)
            async for chunk in copy.run():
                yield chunk


class _Copy:
    """One copy: its progress, and what the server said about the video (to resume it)."""

    def __init__(self, copier: UrlCopier, pool: httpcore.AsyncConnectionPool, url: str) -> None:
        self.copier = copier
        self.pool = pool
        self.url = url
        self.got = 0  # bytes passed on
        self.total: int | None = None
        self.validator: bytes | None = None  # the first answer's ETag or Last-Modified
        self.head = b""  # the first bytes, until they are known to be a video's

    async def run(self) -> AsyncIterator[bytes]:
        idle = 0
        while True:
            before = self.got
            try:
                async for chunk in self._one_get():
                    yield chunk
                if self.total is not None and self.got < self.total:
                    raise _Dropped(f"the connection closed at byte {self.got} of {self.total}")
                if self.head:  # a video shorter than SNIFF bytes
                    yield self._sniffed(final=True)
                return
            except _Dropped as dropped:
                idle = 0 if self.got > before else idle + 1
                if idle >= MAX_IDLE_RESUMES:
                    raise HandlerError(
                        f"copying {shown(self.url)}: {dropped.reason}, {idle} times in a row "
                        f"without a byte ({self.got:,} bytes copied)"
                    ) from None
                if idle:  # at once after progress; a moment, doubling, after none
                    await asyncio.sleep(min(0.25 * 2 ** (idle - 1), 2.0))

    async def _one_get(self) -> AsyncIterator[bytes]:
        """One GET (following redirects) from where the copy stands."""
        target = self.url
        for _ in range(MAX_REDIRECTS + 1):
            parts = self.copier.policy.check_url(target)
            try:
                async with self.pool.stream(
                    "GET", _request_url(parts), headers=self._headers(),
                    extensions={"timeout": {
                        "connect": CONNECT_SECONDS, "read": self.copier.stall_seconds,
                        "write": CONNECT_SECONDS, "pool": CONNECT_SECONDS,
                    }},
                ) as response:  # fmt: skip
                    if response.status in _REDIRECTS:
                        location = _header(response, b"location")
                        if location is None:
                            raise HandlerError(
                                f"{shown(target)} answered {response.status} with no Location"
                            )
                        target = urljoin(target, location.decode("latin-1"))
                        continue
                    skip = self._accept(response, target)
                    async for chunk in response.aiter_stream():
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        if chunk:
                            self.got += len(chunk)
                            if self.head or self.got - len(chunk) < SNIFF:
                                self.head += chunk
                                if len(self.head) >= SNIFF:
                                    yield self._sniffed(final=False)
                            else:
                                yield chunk
                    return
            except httpcore.TimeoutException as exc:
                raise _Dropped(
                    f"no answer within {self.copier.stall_seconds:g}s"
                    if isinstance(exc, httpcore.ReadTimeout) else f"timed out ({exc})"
                ) from None  # fmt: skip
            except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
                raise _Dropped(f"the connection dropped ({exc or type(exc).__name__})") from None
        raise HandlerError(
            f"copying {shown(self.url)}: more than {MAX_REDIRECTS} redirects (last to "
            f"{shown(target)})"
        )

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"Accept", b"video/*, */*"), (b"User-Agent", b"vidretry")]
        if self.got:
            headers.append((b"Range", b"bytes=%d-" % self.got))
            if self.validator is not None:
                headers.append((b"If-Range", self.validator))
        return headers

    def _accept(self, response: httpcore.Response, target: str) -> int:
        """Check an answer; the bytes of its body already copied (a server that sends the
        whole video again instead of the rest)."""
        status = response.status
        if status in (404, 410):
            raise HandlerError(f"the generator's URL is gone ({status}): {shown(target)}")
        if status >= 500 or status == 429:
            raise _Dropped(f"the server answered {status}")
        validator = _header(response, b"etag") or _header(response, b"last-modified")
        if status == 206 and self.got:
            first, total = _content_range(response)
            if first != self.got:
                raise HandlerError(
                    f"copying {shown(self.url)}: asked for the rest from byte {self.got}, "
                    f"got a part from byte {first}"
                )
            self.total = total if total is not None else self.total
            return 0
        if status not in (200, 206):
            raise HandlerError(f"the generator's URL answered {status}: {shown(target)}")
        if self.got and validator != self.validator:
            raise HandlerError(f"the video at {shown(self.url)} changed while it was copied")
        if not self.got:
            self.validator = validator
            length = _header(response, b"content-length")
            self.total = int(length) if length and length.isdigit() else None
            if status == 206:
                self.total = _content_range(response)[1]
        return self.got  # a whole answer again: what was copied is skipped

    def _sniffed(self, *, final: bool) -> bytes:
        """The first bytes, now that there are enough to tell (or all there is)."""
        head, self.head = self.head, b""
        if not looks_like_video(head[:SNIFF]):
            preview = head[:16]
            raise HandlerError(
                f"what {shown(self.url)} answered is not a video (it begins {preview!r}"
                f"{'' if final else '…'})"
            )
        return head


def _request_url(parts: SplitResult) -> httpcore.URL:
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return httpcore.URL(
        scheme=parts.scheme.encode(),
        host=host.encode("idna") if not host.isascii() else host.encode(),
        port=port,
        target=target.encode("utf-8"),
    )


def _header(response: httpcore.Response, name: bytes) -> bytes | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value
    return None


def _content_range(response: httpcore.Response) -> tuple[int, int | None]:
    """``bytes 100-199/1000`` → (100, 1000); a total of ``*`` is unknown."""
    value = (_header(response, b"content-range") or b"").decode("latin-1")
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        first = int(span.partition("-")[0])
        if unit != "bytes":
            raise ValueError(value)
    except ValueError:
        raise HandlerError(f"a part with a bad Content-Range: {value[:60]!r}") from None
    return first, int(total) if total.isdigit() else None
