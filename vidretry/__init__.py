"""vidretry: a Postgres-backed job queue for video generation that answers every Telegram user.

For a bot that keeps its own framework: ``vidretry.enqueue(conn, name, user_id=...)``,
``vidretry.retry``, ``vidretry.press_retry``, ``vidretry.cancel`` and ``vidretry.asset``
work on the bot's own psycopg connection, in its transaction (vidretry.queue.interface;
docs/integrate.md). They are loaded when first used, so ``vidretry --help`` does not pay for them.
"""

from typing import TYPE_CHECKING, Any

from vidretry.version import __version__ as __version__

__all__ = ["asset", "cancel", "enqueue", "press_retry", "retry"]

if TYPE_CHECKING:
    from vidretry.queue.interface import asset, cancel, enqueue, press_retry, retry


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vidretry.queue import interface

        return getattr(interface, name)
    raise AttributeError(f"module 'vidretry' has no attribute {name!r}")
