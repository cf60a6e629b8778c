"""What a request may carry, checked: ids in its path and query, the fields of a form or a
JSON body, and where a form's action goes back to. Bad input is a ``Refused`` with one line.
"""

from __future__ import annotations

import contextlib
import html
from typing import Any

from starlette.requests import Request

from vidretry.web.answers import Refused


def is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


async def request_fields(request: Request) -> dict[str, Any]:
    """The request's fields: a form's, a JSON object's, else the query's."""
    if is_form(request):
        return dict(await request.form())
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    return dict(request.query_params)


def optional_int(fields: dict[str, Any], key: str) -> int | None:
    """An integer field of a form or a JSON body: absent (None), or a whole number."""
    value = fields.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Refused(400, f"{key} must be an integer")
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or not text.isascii() or len(text) > 20:
        raise Refused(400, f"{key} must be an integer, got {text[:30]!r}")
    return int(text)


def next_page(request: Request) -> str:
    """Where a form's action goes back to: a path on this site, never elsewhere."""
    target = request.query_params.get("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def path_id(request: Request) -> int:
    text = request.path_params["id"]
    if not (text.isascii() and text.isdigit() and 1 <= len(text) <= 19):
        raise Refused(404, f"no such id: {html.escape(text[:20])}")
    return int(text)


def int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise Refused(400, f"{name} must be an id")
    return int(text)


def like_prefix(text: str) -> str:
    """A LIKE pattern for names that start with ``text`` (its wildcards taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
