"""Secret references (``${env:NAME}``, ``${file:PATH}``) and the redactor that hides them.

Every value resolved from a reference is registered with the run's :class:`Redactor`;
every sink (console, report file, plugin hook, merge fields, printed JSON, errors) passes
its text through it, so a secret that an API echoes back is still never shown.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import SecretError

SECRET_REF = re.compile(r"\$\{(?P<kind>[A-Za-z_]+):(?P<name>[^}]*)\}")
MASK = "***"
# Secrets shorter than this are not redacted as substrings: masking every "a" in a report
# would destroy it and protect nothing.
_MIN_SECRET = 4
# A base64 form shorter than this is not masked: it would match by chance.
_MIN_BASE64 = 8
_URLSAFE = str.maketrans("+/", "-_")


def has_reference(value: str) -> bool:
    return SECRET_REF.search(value) is not None


def reference_problems(value: str) -> list[str]:
    """Syntax problems of the references in ``value`` (checked without resolving them)."""
    found = []
    for match in SECRET_REF.finditer(value):
        kind, name = match["kind"], match["name"]
        if kind not in ("env", "file"):
            found.append(
                f"unknown secret source {kind!r} in {match[0]!r}: "
                "use ${env:NAME} or ${file:PATH}"
            )
        elif not name.strip():
            found.append(f"{match[0]!r} names no {'variable' if kind == 'env' else 'file'}")
    return found


def resolve(
    value: str,
    *,
    environ: Mapping[str, str],
    base_dir: Path,
    where: str,
    redactor: Redactor | None = None,
) -> str:
    """Replace every reference in ``value``; ``where`` names the setting for errors."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match["kind"], match["name"].strip()
        if kind == "env":
            if name not in environ:
                raise SecretError(
                    f"{where}: environment variable {name} is not set "
                    f"(referenced as ${{env:{name}}}); export it before running, "
                    "e.g. `export " + name + "=...`"
                )
            secret = environ[name]
        elif kind == "file":
            path = Path(name).expanduser()
            if not path.is_absolute():
                path = base_dir / path
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise SecretError(
                    f"{where}: secret file {path} does not exist "
                    f"(referenced as ${{file:{name}}}); create it or fix the path"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise SecretError(
                    f"{where}: secret file {path} cannot be read ({exc.__class__.__name__}); "
                    "check its permissions and that it holds UTF-8 text"
                ) from None
        else:
            raise SecretError(
                f"{where}: unknown secret source {kind!r}; use ${{env:NAME}} or ${{file:PATH}}"
            )
        if not secret:
            raise SecretError(f"{where}: the secret from {match[0]} is empty")
        if redactor is not None:
            redactor.add(secret)
        return secret

    return SECRET_REF.sub(replace, value)


class Redactor:
    """Masks known secret values in text and in JSON-like data."""

    __slots__ = ("_forms", "_pattern", "_secrets", "_shortest")

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._forms: set[str] = set()  # regular expressions, one per form of a secret
        self._pattern: re.Pattern[str] | None = None
        # No form of any secret matches fewer characters: shorter strings are left as they
        # are without running the expression (most strings of an API's answer are short).
        self._shortest = 0

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def add(self, secret: str) -> None:
        if len(secret) < _MIN_SECRET or secret in self._secrets:
            return
        self._secrets.add(secret)
        forms, shortest = _forms_of(secret)
        self._forms.update(forms)
        self._shortest = min(self._shortest or shortest, shortest)
        # Longest first: a form that contains another is masked whole.
        self._pattern = re.compile("|".join(sorted(self._forms, key=len, reverse=True)))

    def text(self, value: str) -> str:
        if self._pattern is None or len(value) < self._shortest:
            return value
        return self._pattern.sub(MASK, value)

    def data(self, value: Any) -> Any:
        """A copy of JSON-like ``value`` with secrets masked in every string (keys included)."""
        if self._pattern is None:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value


@functools.lru_cache(maxsize=32)
def _forms_of(secret: str) -> tuple[frozenset[str], int]:
    """The forms of a secret and the fewest characters any of them matches, computed once
    per process: each step's API client registers its key with a redactor of its own, and
    building the forms cost more than the rest of the client."""
    forms = _forms(secret)
    shortest = min([len(secret), *(len(c) for c in _base64_cores(secret))])
    return frozenset(forms), shortest


def _forms(secret: str) -> set[str]:
    """Regular expressions for the forms a secret takes when a server echoes it back: as
    it is, URL-encoded, JSON-escaped in any way a JSON encoder may choose (``\\/``,
    ``\\u002b``, ``\\"``), and base64-encoded (standard or URL-safe), also inside a
    longer base64 text such as ``Basic base64(user:key)``."""
    forms = {re.escape(quote(secret, safe="")), _json_escaped(secret)}
    for core in _base64_cores(secret):
        forms.add(re.escape(core))
        forms.add(re.escape(core.translate(_URLSAFE)))
    return forms


def _base64_cores(secret: str) -> list[str]:
    """The secret's base64 text at each of the three alignments, long enough to mask."""
    raw = secret.encode("utf-8")
    cores = []
    for offset in range(3):
        # Encoded after `offset` other bytes, the secret's bits start mid-character; keep
        # only the characters made of the secret's bits alone.
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii").rstrip("=")
        core = encoded[-(-8 * offset // 6) : 8 * (offset + len(raw)) // 6]
        if len(core) >= _MIN_BASE64:
            cores.append(core)
    return cores


def _json_escaped(secret: str) -> str:
    """One expression matching the secret with each character as it is or JSON-escaped."""
    parts = []
    for char in secret:
        options = {re.escape(char)}
        short = json.dumps(char)[1:-1]  # \" \\ \n ... where JSON has a short escape
        if short != char:
            options.add(re.escape(short))
        if char == "/":
            options.add(re.escape("\\/"))
        escaped = json.dumps(char, ensure_ascii=True)[1:-1]
        if not escaped.startswith("\\u"):
            escaped = f"\\u{ord(char):04x}"
        # Hex digits in either case: \u002b and \u002B are the same character.
        options.add(
            "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in escaped)
        )
        parts.append(options.pop() if len(options) == 1 else f"(?:{'|'.join(sorted(options))})")
    return "".join(parts)


__all__ = ["MASK", "SECRET_REF", "Redactor", "has_reference", "reference_problems", "resolve"]
