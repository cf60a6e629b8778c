"""Telethon's errors told as vidretry's outcomes (vidretry.telegram.transport's
``DeliveryError``s, ``TelegramUnavailable``), so that nothing above the bot sees one; and how
a recipient is addressed. The bot token is never in an outcome's text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from telethon import errors, types

from vidretry.errors import TelegramUnavailable
from vidretry.results.base import ResultCorrupt, ResultMissing, ResultRefused, StoreUnavailable
from vidretry.telegram.bot.client import sending_to
from vidretry.telegram.transport import (
    MessageRefused,
    Recipient,
    RecipientRefused,
    SendLater,
    StoreDown,
    TelegramDown,
)

# Permanent for the recipient: blocked, deactivated, or an id Telegram does not know.
RECIPIENT_GONE = (
    errors.UserIsBlockedError,
    errors.InputUserDeactivatedError,
    errors.PeerIdInvalidError,
    errors.UserIsBotError,
    errors.ChatWriteForbiddenError,
    errors.ForbiddenError,
)
# The bot's own authorisation is gone: nothing can be sent until an operator acts.
BOT_REFUSED = (
    errors.UnauthorizedError,
    errors.AuthKeyError,
    errors.AccessTokenInvalidError,
    errors.AccessTokenExpiredError,
)
# Telegram is failing everybody: the connection is gone, or a timeout, a server error (5xx).
CONNECTION_LOST = (ConnectionError, OSError)
TELEGRAM_DOWN = (errors.ServerError, errors.TimedOutError, asyncio.TimeoutError, *CONNECTION_LOST)
# Reading the video file failed: this message's trouble, not Telegram's (they are OSErrors).
UNREADABLE_FILE = (FileNotFoundError, PermissionError, IsADirectoryError)
# A stored video reference Telegram will not take: expired (fetch a fresh one from the
# message it was first sent in), or gone for good (upload again).
REFERENCE_EXPIRED = (errors.FileReferenceExpiredError,)
REFERENCE_GONE = (
    errors.FileReferenceInvalidError,
    errors.FileReferenceEmptyError,
    errors.MediaEmptyError,
    errors.FileIdInvalidError,
)
# Cleaning up after a press: Telegram may refuse, and that is fine.
CLEANUP_REFUSED = (
    errors.QueryIdInvalidError,
    errors.MessageNotModifiedError,
    errors.MessageDeleteForbiddenError,
    errors.MessageIdInvalidError,
    errors.MessageEditTimeExpiredError,
)
# An acceptance message that can no longer be edited: deleted, or not the bot's to edit.
MESSAGE_GONE = (
    errors.MessageIdInvalidError,
    errors.MessageEditTimeExpiredError,
    errors.MessageAuthorRequiredError,
)


async def sending(
    send: Callable[[Any], Awaitable[Any]],
    to: Recipient,
    *,
    passing: tuple[type[BaseException], ...] = (),
) -> Any:
    """``send`` to ``to``, Telethon's errors told as ``DeliveryError``s; those in
    ``passing`` are raised as they are (the caller handles them)."""
    chat = sending_to.set(to.chat_id)
    try:
        return await send(peer(to))
    except passing:
        raise
    except (*UNREADABLE_FILE, ResultMissing, ResultRefused, ResultCorrupt) as exc:
        raise MessageRefused(f"cannot read the video: {describe(exc)}") from None
    except StoreUnavailable as exc:
        raise StoreDown(f"the video store is unreachable: {exc}") from None
    except (
        errors.FloodWaitError,
        errors.FloodPremiumWaitError,
        errors.SlowModeWaitError,
    ) as exc:
        raise SendLater(f"flood wait {exc.seconds}s", seconds=float(exc.seconds)) from None
    except RECIPIENT_GONE as exc:
        raise RecipientRefused(f"recipient refused: {code(exc)}") from None
    except BOT_REFUSED as exc:
        raise TelegramUnavailable(f"Telegram dropped the bot ({code(exc)})") from None
    except errors.BadRequestError as exc:
        raise MessageRefused(f"Telegram refused the message: {code(exc)}") from None
    except ValueError as exc:
        if "input entity" in str(exc):  # Telethon cannot address them: never wrote to us
            raise RecipientRefused("recipient unknown (never started the bot)") from None
        raise SendLater(describe(exc)) from None
    except TELEGRAM_DOWN as exc:
        # TimeoutError is an OSError too, but one slow answer is not a lost connection.
        lost = isinstance(exc, CONNECTION_LOST) and not isinstance(exc, TimeoutError)
        raise TelegramDown(describe(exc), connection_lost=lost) from None
    except errors.RPCError as exc:
        raise SendLater(describe(exc)) from None
    finally:
        sending_to.reset(chat)


def peer(to: Recipient) -> Any:
    if to.access_hash is not None and to.chat_id == to.user_id:
        return types.InputPeerUser(to.user_id, to.access_hash)
    return to.chat_id


def code(exc: BaseException) -> str:
    """Telegram's error code, e.g. USER_IS_BLOCKED. Telethon's named errors carry only their
    category in ``.message`` (BAD_REQUEST), so the code is rebuilt from the class name."""
    name = type(exc).__name__
    if isinstance(exc, errors.RPCError) and type(exc).__module__.startswith(
        "telethon.errors.rpcerrorlist"
    ):
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Error")).upper()
    message = getattr(exc, "message", None)
    return str(message) if message else name


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
