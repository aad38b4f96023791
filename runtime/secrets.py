"""Secret references (``${env:NAME}``, ``${file:PATH}``) and the redactor that hides them.

Every value resolved from a reference is registered with the run's :class:`Redactor`;
every sink (console, report file, plugin hook, merge fields, printed JSON, errors) passes
its text through it, so a secret that an API echoes back is still never shown.
"""

from __future__ import annotations

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

    __slots__ = ("_pattern", "_secrets")

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def add(self, secret: str) -> None:
        if len(secret) < _MIN_SECRET or secret in self._secrets:
            return
        self._secrets.add(secret)
        # The forms a secret takes when it is embedded in JSON or a URL, too.
        forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}
        known = {f for s in self._secrets for f in (s, json.dumps(s)[1:-1], quote(s, safe=""))}
        known |= forms
        self._pattern = re.compile(
            "|".join(re.escape(f) for f in sorted(known, key=len, reverse=True))
        )

    def text(self, value: str) -> str:
        if self._pattern is None:
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


__all__ = ["MASK", "SECRET_REF", "Redactor", "has_reference", "reference_problems", "resolve"]
