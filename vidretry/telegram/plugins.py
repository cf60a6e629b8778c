"""The operator's own Telethon handlers: ``[telegram] plugins``, modules whose
``register(client)`` the notifier calls once logged in. Loading them needs no Telethon here
(a plugin imports it itself), so ``vidretry doctor`` checks them too."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from vidretry.errors import ConfigError


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
        if not callable(getattr(module, "register", None)):
            raise ConfigError(f"{key}: {name!r} has no register(client) function")
        plugins.append(module)
    return plugins


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
