"""The listening socket both servers use (``serve-local`` and ``serve``)."""

from __future__ import annotations

import socket

from .errors import InvalidInput


def listening_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is one clear sentence (uvicorn
    would log its own error and exit 3).

    Created with ``IPPROTO_TCP`` named: asyncio sets TCP_NODELAY on the connections it
    accepts only when the listening socket says it is TCP. Without it every answer waited
    for the client's delayed ACK (Nagle), about 40 ms a request (issue 14).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port, "
            "or --port 0 for a free one"
        ) from None
    return sock


__all__ = ["listening_socket"]
