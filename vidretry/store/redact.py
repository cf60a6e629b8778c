"""Database URLs and errors made fit for a log line or a terminal: one line, no password."""

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
