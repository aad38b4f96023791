"""Durations as flow files write them: ``30s``, ``5m``, ``2h``, ``1h30m``, ``500ms``, or seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``; raises ValueError with a sentence a user can act on."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 5m or 2h, found {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"a duration must be more than 0 seconds, found {value}")
        return float(value)
    text = value.strip()
    total, pos = 0.0, 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"expected a duration such as 30s, 5m, 2h or 1h30m, found {value!r}")
        total += float(match[1]) * _UNIT[match[2]]
        pos = match.end()
    if total <= 0:
        raise ValueError(f"a duration must be more than 0 seconds, found {value!r}")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


__all__ = ["format_duration", "parse_duration"]
