"""Serving the step service with uvicorn (``steprun serve``)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..serving import listening_socket
from .app import ServiceSettings, build_app

READY = "steprun service listening on {url} (OpenAPI document: {url}/openapi.json)"


def read_or_create_token(token_file: Path | None, state_dir: Path) -> tuple[str, Path]:
    """The bearer token from ``token_file``, or one created (owner-only) in the state folder."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{token_file}: cannot read the token: {exc}") from None
        if len(token) < 16:
            raise InvalidInput(
                f"{token_file}: the token is {len(token)} characters; use at least 16 "
                "random characters (e.g. `python -c 'import secrets; print(secrets."
                "token_urlsafe(32))' > TOKEN_FILE`)"
            )
        return token, token_file
    path = state_dir / "service.token"
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), path
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token, path


def serve(settings: ServiceSettings, *, host: str, port: int, log_level: str = "warning") -> None:
    """Serve until interrupted; print one ready line with the real port on stderr."""
    import uvicorn

    sock = listening_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"
    if settings.server_url is None:
        from dataclasses import replace

        settings = replace(settings, server_url=url)
    config = uvicorn.Config(
        build_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(READY.format(url=url), file=sys.stderr, flush=True)

    Server(config).run(sockets=[sock])


__all__ = ["READY", "read_or_create_token", "serve"]
