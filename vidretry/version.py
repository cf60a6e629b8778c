"""This release of vidretry: its number (``version`` in pyproject.toml, which a test holds
to this one), and releases as comparable values (docs/upgrading.md)."""

from __future__ import annotations

import re

__version__ = "0.20.0"

Release = tuple[int, int, int]

_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def parse_release(text: str) -> Release:
    """``"0.20.0"`` as ``(0, 20, 0)``: releases compare as tuples."""
    match = _RELEASE.match(text)
    if match is None:
        raise ValueError(f"a release is MAJOR.MINOR.PATCH, got {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


def release_text(release: Release) -> str:
    return ".".join(map(str, release))
