"""The console's JSON API, with the pages' auth (a session cookie, or ``Authorization: Bearer
<token>``): ``GET /api/assets``, ``GET /api/assets/{id}``, ``POST /api/assets`` (ask for a
video), ``POST /api/assets/{id}/retry`` and ``/cancel`` (as an operator, or as a Telegram
user: ``telegram_user``), ``POST /api/queue/pause`` and ``/resume``, ``POST
/api/notifications/{id}/resend``, ``POST /api/failed/retry``. The pages' forms post to the
same routes, and are sent back to the page with the answer as a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.errors import ConfigError, RefusedError
from vidretry.queue import breaker, interface
from vidretry.queue.cancel import cancel, describe_cancel
from vidretry.queue.enqueue import enqueue
from vidretry.queue.retry import Actor, describe_retry, retry
from vidretry.web import reads
from vidretry.web.answers import Refused, json_answer, jsonable, redirect
from vidretry.web.auth import Auth
from vidretry.web.params import (
    is_form,
    like_prefix,
    next_page,
    optional_int,
    path_id,
    request_fields,
)

# The SQL interface's refusals, as HTTP says them.
STATUS_OF = {
    "VR001": 400, "VR002": 400, "VR003": 400, "VR004": 400,
    "VR010": 404, "VR011": 403, "VR012": 409, "VR013": 409, "VR014": 429,
}  # fmt: skip


class Api:
    def __init__(self, pool: AsyncConnectionPool[Connection], auth: Auth) -> None:
        self.pool = pool
        self.auth = auth

    async def list_assets(self, request: Request) -> Response:
        await self.auth.require(request)
        found = await reads.search(self.pool, request)
        return json_answer({"assets": found["assets"], "next": found["more"]})

    async def show_asset(self, request: Request) -> Response:
        await self.auth.require(request)
        return json_answer(await reads.asset(self.pool, request))

    async def ask_for_video(self, request: Request) -> Response:
        """Ask for a video: ``name``, and optionally ``telegram_user`` (who waits; the
        request is then theirs), ``chat``, ``params`` (an object) and ``priority`` (0-9)."""
        caller = await self.auth.require(request, ask=True)
        values = await request_fields(request)
        name = values.get("name")
        params = values.get("params") or {}
        if not isinstance(name, str) or not isinstance(params, dict):
            raise Refused(400, "name must be a string and params an object")
        try:
            user = optional_int(values, "telegram_user")
            chat = optional_int(values, "chat")
            priority = optional_int(values, "priority") or 0
            async with self.pool.connection() as conn:
                done = await enqueue(
                    conn, name, user_id=user, chat_id=chat, params=params, priority=priority,
                    asked_by=caller.actor,
                )  # fmt: skip
        except ConfigError as exc:
            raise Refused(400, str(exc)) from None
        if done.out_of_retries:
            # Asking again for a failed video is a retry: refused as the user's button press
            # would be (vidretry_press_retry's 429), the admins told.
            return json_answer(
                {
                    "ok": False, "asset_id": done.asset_id, "state": done.state,
                    "created": False, "outcome": "out_of_retries", "sqlstate": "VR014",
                    "error": f"asset {done.asset_id} stays failed: user {user} has no "
                    "retries left today",
                },
                status=STATUS_OF["VR014"],
            )  # fmt: skip
        return json_answer(
            {"ok": True, "asset_id": done.asset_id, "state": done.state, "created": done.created}
        )

    async def retry_asset(self, request: Request) -> Response:
        """Retry as an operator; or, with ``telegram_user``, as that user's button press
        would (a service may only do that)."""
        user = optional_int(await request_fields(request), "telegram_user")
        if user is not None:
            await self.auth.require(request, ask=True)
            return await self._pressed(request, user)
        caller = await self.auth.require(request, act=True)
        async with self.pool.connection() as conn:
            result = await retry(conn, path_id(request), Actor(caller.actor), reason="web console")
        return self._done(request, result.retried, describe_retry(result), result)

    async def _pressed(self, request: Request, user: int) -> Response:
        """The retry button pressed by a Telegram user (vidretry_press_retry): out of retries
        for today, the admins are told as vidretry's own button tells them; each refusal is
        the HTTP status and SQLSTATE that vidretry_retry would have raised."""
        asset_id = path_id(request)
        try:
            async with self.pool.connection() as conn:
                outcome, retry_round = await interface.press_retry(conn, asset_id, user_id=user)
        except ConfigError as exc:
            return json_answer(
                {"ok": False, "error": str(exc), "sqlstate": exc.sqlstate}, status=400
            )
        if outcome == "retried":
            return json_answer(
                {"ok": True, "message": f"asset {asset_id} retried", "result": retry_round}
            )
        sqlstate = interface.PRESS_REFUSAL[outcome]
        error = f"asset {asset_id}: {outcome.replace('_', ' ')}"
        return json_answer(
            {"ok": False, "error": error, "outcome": outcome, "sqlstate": sqlstate},
            status=STATUS_OF[sqlstate],
        )

    async def _as_user(
        self,
        request: Request,
        action: Callable[..., Awaitable[object]],
        user: int,
        done: str,
    ) -> Response:
        """The SQL interface's rules for a Telegram user (vidretry_cancel):
        its refusals as HTTP statuses, with its SQLSTATE."""
        asset_id = path_id(request)
        try:
            async with self.pool.connection() as conn:
                result = await action(conn, asset_id, user_id=user)
        except (ConfigError, RefusedError) as exc:
            status = STATUS_OF.get(exc.sqlstate or "", 409)
            return json_answer(
                {"ok": False, "error": str(exc), "sqlstate": exc.sqlstate}, status=status
            )
        return json_answer({"ok": True, "message": f"asset {asset_id} {done}", "result": result})

    async def cancel_asset(self, request: Request) -> Response:
        """Cancel the asset as an operator; or, with ``telegram_user``, take back that
        user's request, as their cancel button would."""
        user = optional_int(await request_fields(request), "telegram_user")
        if user is not None:
            await self.auth.require(request, ask=True)
            return await self._as_user(request, interface.cancel, user, "request taken back")
        caller = await self.auth.require(request, act=True)
        async with self.pool.connection() as conn:
            result = await cancel(conn, path_id(request), Actor(caller.actor), reason="web console")
        return self._done(request, result.changed, describe_cancel(result), result)

    async def pause_queue(self, request: Request) -> Response:
        caller = await self.auth.require(request, act=True)
        async with self.pool.connection() as conn:
            done = await breaker.pause(conn, actor=caller.actor, detail="web console")
        return self._done(request, True, f"queue {done.value}", {"paused": done.value})

    async def resume_queue(self, request: Request) -> Response:
        caller = await self.auth.require(request, act=True)
        async with self.pool.connection() as conn:
            resumed = await breaker.resume(conn, actor=caller.actor, admins=[])
        text = "queue resumed" if resumed is not None else "queue was not paused"
        return self._done(request, resumed is not None, text, {"resumed": resumed is not None})

    async def resend_notification(self, request: Request) -> Response:
        caller = await self.auth.require(request, act=True)
        note_id = path_id(request)
        async with self.pool.connection() as conn:
            row = await fetch_one(
                conn, "resend_notification", {"id": note_id, "actor": caller.actor}
            )
        text = f"notification {note_id} " + ("queued again" if row else "is not dead")
        return self._done(request, row is not None, text, {"resent": row is not None})

    async def retry_failed(self, request: Request) -> Response:
        """Retry every failed asset that matches the filter the page showed; the count the
        operator confirmed must still be the count, or nothing is retried."""
        caller = await self.auth.require(request, act=True)
        values = await request_fields(request)
        q = str(values.get("q") or "").strip()[:200]
        prefix = like_prefix(q) if q else None
        async with self.pool.connection() as conn:
            ids = [r["id"] for r in await fetch_all(conn, "failed_ids", {"prefix": prefix})]
            expected = str(values.get("expected") or "")
            if expected and expected != str(len(ids)):
                return self._done(
                    request, False,
                    f"{len(ids)} failed asset(s) match now, not {expected}: nothing retried",
                    {"retried": 0, "failed": len(ids)},
                )  # fmt: skip
            retried = 0
            for asset_id in ids:
                result = await retry(conn, asset_id, Actor(caller.actor), reason="web: bulk retry")
                retried += result.retried
        return self._done(
            request, True, f"{retried} of {len(ids)} failed asset(s) queued again",
            {"retried": retried, "failed": len(ids)},
        )  # fmt: skip

    def _done(self, request: Request, ok: bool, text: str, result: Any) -> Response:
        """An action's answer: back to the page for a browser's form, JSON for a script (one
        with a Bearer token is never a browser, whatever content type it sends)."""
        if is_form(request) and "authorization" not in request.headers:
            request.session["flash"] = text
            return redirect(next_page(request))
        body = result if isinstance(result, dict) else jsonable(result)
        return json_answer({"ok": ok, "message": text, **body}, status=200 if ok else 409)
