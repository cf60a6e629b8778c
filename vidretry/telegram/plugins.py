"""The operator's own code in the bot: ``[telegram] plugins``, modules the notifier loads.

A plugin module has ``register(client)``, which the notifier calls once logged in to add the
operator's own Telethon handlers, and/or ``request_priority(request)``, which decides the
priority (0-9, higher first) of a video a Telegram user asks for — a paying user's, an
admin's. Loading them needs no Telethon here (a plugin imports it itself), so ``vidretry
doctor`` checks them too.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from vidretry.errors import ConfigError
from vidretry.queue.enqueue import MAX_PRIORITY

log = logging.getLogger("vidretry.plugins")


@dataclass(frozen=True)
class PriorityRequest:
    """What ``request_priority`` is told of a request for a video."""

    user_id: int
    name: str  # the video's name, normalised
    is_admin: bool  # listed in [telegram] admins


def load_plugins(names: Sequence[str]) -> list[ModuleType]:
    """Import the operator's plugin modules at start, so a typo is a config error (exit 2),
    not a surprise at the first login."""
    plugins = []
    for i, name in enumerate(names):
        key = f"[telegram] plugins[{i}]"
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(f"{key}: cannot import {name!r}: {_describe(exc)}") from None
        hooks = [hook for hook in ("register", "request_priority") if hasattr(module, hook)]
        if not hooks:
            raise ConfigError(
                f"{key}: {name!r} has neither register(client) nor request_priority(request)"
            )
        for hook in hooks:
            if not callable(getattr(module, hook)):
                raise ConfigError(f"{key}: {name!r}.{hook} is not a function")
        plugins.append(module)
    return plugins


def registering(plugins: Sequence[ModuleType]) -> list[ModuleType]:
    """The plugins that add Telethon handlers."""
    return [plugin for plugin in plugins if hasattr(plugin, "register")]


class Priorities:
    """The priority of a Telegram user's request: the highest any plugin's
    ``request_priority`` gives (0 without one). A plugin's error, or an answer that is not
    an integer from 0 to 9, is logged and counts as 0: a request is never lost to it."""

    def __init__(self, plugins: Sequence[ModuleType]) -> None:
        self.hooks = [
            (plugin.__name__, plugin.request_priority)
            for plugin in plugins
            if hasattr(plugin, "request_priority")
        ]

    async def of(self, request: PriorityRequest) -> int:
        highest = 0
        for name, hook in self.hooks:
            try:
                answer = hook(request)
                if inspect.isawaitable(answer):
                    answer = await answer
            except Exception as exc:
                log.error("plugin %s: request_priority failed (%s): priority 0", name,
                          _describe(exc))  # fmt: skip
                continue
            if isinstance(answer, bool) or not isinstance(answer, int):
                log.error("plugin %s: request_priority returned %r, not an integer", name, answer)
            elif not 0 <= answer <= MAX_PRIORITY:
                log.error("plugin %s: request_priority returned %d, not 0 to %d", name, answer,
                          MAX_PRIORITY)  # fmt: skip
            else:
                highest = max(highest, answer)
        return highest


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
