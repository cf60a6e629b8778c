"""How the console answers a request: a page, JSON, a redirect or a refusal, each with the
security headers (a Content-Security-Policy with no inline script, no framing, no caching).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from vidretry.web.tokens import Caller

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request refused: its status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Templates:
    """The console's templates (``templates/``), rendered with what every page shows: the
    caller, the session's CSRF token and a message left by the last action."""

    def __init__(self) -> None:
        self.templates = Jinja2Templates(
            env=jinja2.Environment(
                loader=jinja2.FileSystemLoader(HERE / "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
        )

    def page(self, request: Request, name: str, caller: Caller | None, **context: Any) -> Response:
        csrf = request.session.get("csrf") or ""
        flash = request.session.pop("flash", None)
        response = self.templates.TemplateResponse(
            request,
            name,
            {"caller": caller, "csrf": csrf, "flash": flash, **context},
        )
        response.headers.update(SECURITY_HEADERS)
        return response


def refusal(request: Request, refused: Refused) -> Response:
    """A refusal as its caller reads it: JSON for the API and for scripts, the login page for
    a browser that must log in, one line of text otherwise."""
    if request.url.path.startswith("/api/") or "authorization" in request.headers:
        return json_answer({"ok": False, "error": refused.reason}, status=refused.status)
    if refused.status == 401:
        return redirect("/login")
    response = PlainTextResponse(refused.reason, status_code=refused.status)
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(path: str) -> Response:
    response = RedirectResponse(path, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def json_answer(body: Any, status: int = 200) -> Response:
    response = JSONResponse(jsonable(body), status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def jsonable(value: Any) -> Any:
    """``value`` as JSON holds it: timestamps in ISO 8601, dataclasses as objects, anything
    else unknown as its text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
