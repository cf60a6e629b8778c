"""The data the bot's buttons carry (Telegram's callback data, 1-64 bytes): written when a
button is made, parsed when one is pressed. The format is public: a host bot's own handler
parses ``retry_video:<asset id>`` (docs/integrate.md).
"""

from __future__ import annotations

from dataclasses import dataclass

# Callback data of the retry button. One constant defines the format; the handler also
# accepts the two older forms (see parse_callback_data). Telegram allows 1-64 bytes.
CALLBACK_PREFIX = "retry_video"
CALLBACK_FORMAT = CALLBACK_PREFIX + ":{asset_id}:{retry_round}"
# The cancel button on an acceptance message and in /cancel's list: the same shape.
CANCEL_PREFIX = "cancel_video"
CANCEL_FORMAT = CANCEL_PREFIX + ":{asset_id}:{retry_round}"
MAX_CALLBACK_BYTES = 64
_MAX_ID_DIGITS = 19  # bigint
_MAX_RETRY_ROUND = 2**31 - 1


def retry_data(asset_id: int, retry_round: int | None) -> str:
    """The retry button's data; without a retry round, the seed's ``retry_video:<id>``, what
    a host bot's own handler parses (a send-only notifier's buttons)."""
    if retry_round is None:
        data = f"{CALLBACK_PREFIX}:{asset_id}"
    else:
        data = CALLBACK_FORMAT.format(asset_id=asset_id, retry_round=retry_round)
    assert len(data.encode()) <= MAX_CALLBACK_BYTES
    return data


def cancel_data(asset_id: int, retry_round: int) -> str:
    data = CANCEL_FORMAT.format(asset_id=asset_id, retry_round=retry_round)
    assert len(data.encode()) <= MAX_CALLBACK_BYTES
    return data


@dataclass(frozen=True)
class ButtonPress:
    asset_id: int
    retry_round: int | None
    cancel: bool = False  # the cancel button; else the retry button


def parse_callback_data(data: bytes) -> ButtonPress | None:
    """The asset (and its retry round) a retry or cancel button names, or None for anything
    else.

    Accepts ``retry_video:<id>:<retry round>`` (current), ``retry_video:<id>`` and the legacy
    ``retry_video_<id>``; and ``cancel_video:<id>:<retry round>``. Ids are plain decimal
    digits that fit a bigint. (The retry round is the ``generation`` column's value: a
    button made before a retry is stale after it.)
    """
    if not 1 <= len(data) <= MAX_CALLBACK_BYTES:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    cancel = text.startswith(CANCEL_PREFIX + ":")
    if cancel:
        parts = text[len(CANCEL_PREFIX) + 1 :].split(":")
        if len(parts) != 2:
            return None
    elif text.startswith(CALLBACK_PREFIX + ":"):
        parts = text[len(CALLBACK_PREFIX) + 1 :].split(":")
    elif text.startswith(CALLBACK_PREFIX + "_"):
        parts = [text[len(CALLBACK_PREFIX) + 1 :]]
    else:
        return None
    if not 1 <= len(parts) <= 2 or not all(_is_number(p, _MAX_ID_DIGITS) for p in parts):
        return None
    asset_id = int(parts[0])
    retry_round = int(parts[1]) if len(parts) == 2 else None
    if not 1 <= asset_id <= 2**63 - 1:
        return None
    if retry_round is not None and retry_round > _MAX_RETRY_ROUND:
        return None
    return ButtonPress(asset_id, retry_round, cancel)


def _is_number(text: str, max_digits: int) -> bool:
    return 1 <= len(text) <= max_digits and text.isascii() and text.isdigit()
