"""Database URLs and errors made fit for a log line or a terminal: one line, no password; and
text that may quote a URL, without its user and password or its query (a signed URL's
credential)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from vidretry.errors import DatabaseUnavailable


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database url>"
    if parts.password is None:
        return re.sub(r"password=\S+", "password=***", url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# A URL's user and password (up to the last "@" before its path: a password may hold one).
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#\"'<>]*@")
# A URL's query (and fragment): up to whitespace, a quote or a bracket that ends the URL.
_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")
# What a signed URL's query carries, should it appear on its own (S3, GCS, Azure, CDNs).
_SIGNATURE = re.compile(
    r"(?i)\b(x-amz-(?:signature|credential|security-token)|x-goog-(?:signature|credential)"
    r"|signature|sig|token|se|sp|sv|st|skoid|sktid|key-pair-id|policy|expires)=[^&\s\"'<>]+"
)


def without_queries(text: str) -> str:
    """``text`` with every URL's user and password and its query and fragment cut
    (``https://…@cdn/v.mp4?…``), and any signature-like ``name=value`` that is left masked:
    fit for an error, a log line, the history or an admin's message. Every text of a
    generator's that leaves the worker goes through it."""
    return _SIGNATURE.sub(r"\1=…", _QUERY.sub(r"\1?…", _USERINFO.sub(r"\1…@", text)))


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, for a log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    """A one-line error for a database that cannot be reached, without its password."""
    reason = one_line(exc)
    if "password" in reason.lower() and "authentication" not in reason.lower():
        reason = "connection refused by the server"
    return DatabaseUnavailable(f"database unreachable at {redact_url(url)}: {reason}")
