"""Reading one line of a JSONL file: UTF-8, strict JSON, one object, no duplicate keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .examples import Problems, json_kind


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that remembers which keys appeared twice (json keeps the last)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _DuplicateKeys(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = []
        for key, _ in pairs:
            if key in seen:
                obj.duplicates.append(key)
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    # json accepts NaN and Infinity, which are not JSON and which the API rejects.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs, parse_constant=_reject_constant)


def _duplicates(value: Any, where: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            yield f"{where}.{key}" if where else key
        for key, item in value.items():
            yield from _duplicates(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _duplicates(item, f"{where}[{i}]")


def parse_line(raw: bytes, out: Problems) -> dict[str, Any] | None:
    """Decode and parse one line; the problems go to ``out``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.add(
            "",
            f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
            "line); save the file as UTF-8",
        )
        return None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        out.add("", f"is not valid JSON: {exc.msg} (column {exc.colno})")
        return None
    except ValueError as exc:
        out.add("", f"is not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        out.add("", f"must be a JSON object (one example per line), found {json_kind(value)}")
        return None
    for path in _duplicates(value):
        out.add("", f"key {path!r} appears twice in the same object")
    return value


__all__ = [
    "parse_line",
]
