"""Backoff between attempts: a pure exponential formula, with jitter applied separately.

The randomness is an argument, so tests pass a seeded ``random.Random`` or ``spread=0``.
"""

from __future__ import annotations

import random


def exponential(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): base, 2·base,
    4·base, ... never more than ``cap``. A base of 0 means no wait at all."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if base <= 0:
        return 0.0
    # Clamp the exponent: 2**attempt overflows a float long before any sane attempt count.
    return float(min(cap, base * 2 ** min(attempt - 1, 62)))


def jittered(seconds: float, rng: random.Random, spread: float = 0.25) -> float:
    """``seconds`` moved by up to ±``spread`` of itself, so retries of many jobs that failed
    together do not all come back at the same instant."""
    if not 0 <= spread <= 1:
        raise ValueError("spread must be between 0 and 1")
    return seconds * (1 + spread * (2 * rng.random() - 1))
