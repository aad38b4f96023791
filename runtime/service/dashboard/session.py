"""Who may see the dashboard: the service's token, exchanged once for a session cookie.

The login form takes the token (compared in constant time) and sets a session cookie that
is HttpOnly (no script reads it), Secure (sent only over HTTPS, or to this machine, which
browsers treat as secure), SameSite=Strict, and scoped to ``/ui``. Each session has its
own CSRF token; every form that changes something carries it, and a POST without it is
refused. Sessions live in memory: restarting the service logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "steprun_session"
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: float


class Sessions:
    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._sessions: dict[str, Session] = {}

    def login(self, given: str) -> Session | None:
        if not hmac.compare_digest(given.encode(), self._token):
            return None
        now = time.time()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
        if len(self._sessions) >= MAX_SESSIONS:  # the oldest makes room
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.id]
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + SESSION_SECONDS
        )
        self._sessions[session.id] = session
        return session

    def of(self, request: Request) -> Session | None:
        found = self._sessions.get(request.cookies.get(COOKIE, ""))
        if found is None or found.expires < time.time():
            return None
        return found

    def logout(self, request: Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)

    @staticmethod
    def set_cookie(response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(SESSION_SECONDS),
            path="/ui",
            httponly=True,
            secure=True,
            samesite="strict",
        )

    @staticmethod
    def csrf_ok(session: Session, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf.encode())


__all__ = ["COOKIE", "Session", "Sessions"]
