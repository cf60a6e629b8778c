"""The bucket's own word on where vidretry's objects go, for ``vidretry doctor``: a listing of
the prefix (S3's ListObjectsV2, one key at most), signed with AWS Signature Version 4 and
sent without the object-store client, which keeps to itself which bucket a listing names.

A store answers a listing with its bucket's name and the prefix it listed: the proof that a
request sent to the bucket's URL reaches that bucket, and not another one that the URL's
host or path named. Reads only; nothing is written.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from vidretry.results.base import StoreMisaddressed, StoreUnavailable

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# A listing's answer is a few hundred bytes; a store that sends more is not answering it.
MOST_READ = 64 * 1024
TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Keys:
    """Static credentials: what a signature needs."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def static_keys(
    access_key_id: str | None, secret_access_key: str | None, env: Mapping[str, str]
) -> Keys | None:
    """The configured keys, else the standard environment's; None where the credentials can
    only come from elsewhere (an instance's role, a web identity): the client fetches those."""
    if access_key_id and secret_access_key:
        return Keys(access_key_id, secret_access_key)
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Keys(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    return None


def signed_headers(
    method: str,
    url: str,
    keys: Keys,
    region: str,
    now: datetime,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign a request without a body for S3 (Signature Version 4, in the
    Authorization header): ``headers`` as given, with the date, the payload's hash, the
    session token if any, and the signature over all of them and the host."""
    parts = urlsplit(url)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    sent = {
        **(headers or {}),
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": stamp,
    }
    if keys.session_token:
        sent["x-amz-security-token"] = keys.session_token
    canonical_headers = {"host": parts.netloc, **{k.lower(): v.strip() for k, v in sent.items()}}
    names = ";".join(sorted(canonical_headers))
    query = sorted(
        (_encode(k), _encode(v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    canonical_request = "\n".join(
        [
            method,
            quote(unquote(parts.path) or "/", safe="/-_.~"),
            "&".join(f"{k}={v}" for k, v in query),
            *(f"{k}:{canonical_headers[k]}" for k in sorted(canonical_headers)),
            "",
            names,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            stamp,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{keys.secret_access_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    sent["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={keys.access_key_id}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return sent


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A signed request is not sent on: a store that redirects it is not the bucket's."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def check_listing(
    bucket_url: str, bucket: str, prefix: str, keys: Keys, region: str, now: datetime
) -> None:
    """List ``prefix`` at ``bucket_url`` and check that the answer is bucket ``bucket``'s
    listing of it. ``StoreUnavailable``: not reached, or refused; ``StoreMisaddressed``:
    the answer is not that bucket's listing of that prefix (another bucket's, a list of
    buckets, an error naming none). Each error is one line that begins with the place,
    ``s3://bucket/prefix at <bucket_url>``."""
    where = f"s3://{bucket}/{prefix} at {bucket_url}"
    query = urlencode({"list-type": "2", "max-keys": "1", "prefix": prefix})
    url = f"{bucket_url}/?{query}"
    # bucket_url is http(s), checked at load ([storage] endpoint_url) or built for AWS.
    request = urllib.request.Request(url, headers=signed_headers("GET", url, keys, region, now))  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as answer:
            status, body = answer.status, answer.read(MOST_READ)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(MOST_READ)
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"{where}: cannot list it: {exc}") from None
    root = _parsed(body)
    tag = root.tag.rpartition("}")[2] if root is not None else None
    text = _texts(root)
    if status in (401, 403):
        raise StoreUnavailable(
            f"{where} refused us a listing ({text.get('Code', status)}): wrong credentials, "
            "or ones that may not list the prefix (s3:ListBucket)"
        )
    if status >= 500:
        raise StoreUnavailable(f"{where}: {status} {text.get('Code', '')}".strip())
    if status != 200 or tag != "ListBucketResult":
        said = text.get("Code") or tag or "no XML"
        raise StoreMisaddressed(
            f"{where} answered a listing with {status} {said}, not the bucket's listing: "
            "check [storage] endpoint_url and path_style, and that the bucket exists"
        )
    named, listed = text.get("Name", ""), text.get("Prefix", "")
    if (named, listed) != (bucket, prefix):
        raise StoreMisaddressed(
            f"{where} answers for bucket {named!r} (prefix {listed!r}), not {bucket!r} "
            f"(prefix {prefix!r}): videos would not be where their URIs say; check "
            "[storage] endpoint_url and path_style"
        )


def _parsed(body: bytes) -> ET.Element | None:
    try:
        # At most MOST_READ bytes; ElementTree expands no external entity, and expat >= 2.4.1
        # refuses the nested ones of a "billion laughs".
        return ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        return None


def _texts(root: ET.Element | None) -> dict[str, str]:
    """The text of the root's children, by name without the namespace."""
    if root is None:
        return {}
    return {child.tag.rpartition("}")[2]: (child.text or "") for child in root}
