"""Signed callbacks: when a run ends, POST its result to the run's ``callback_url``.

Signed per the Standard Webhooks spec with the ``standardwebhooks`` package: headers
``webhook-id`` (the same on every retry, so a receiver can drop duplicates),
``webhook-timestamp`` and ``webhook-signature``. A delivery that fails (no answer, or any
status but 2xx) is retried with exponential back-off; each attempt is recorded, so a
restarted service goes on delivering what it still owes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from .records import Records

DEFAULT_ATTEMPTS = 8
DEFAULT_FIRST_DELAY = 1.0
MAX_DELAY = 300.0
TIMEOUT = 15.0


def new_secret() -> str:
    """A fresh signing secret in the ``whsec_`` form receivers expect."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def load_or_create_secret(path: Path) -> str:
    """The signing secret in ``path``; a new one is written there (owner-only) if none is."""
    import os

    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = new_secret()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


class Callbacks:
    """Delivers the callbacks of one service."""

    def __init__(
        self,
        records: Records,
        secret: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        first_delay: float = DEFAULT_FIRST_DELAY,
    ) -> None:
        from standardwebhooks.webhooks import Webhook

        self.records = records
        self.webhook = Webhook(secret)
        self.attempts = attempts
        self.first_delay = first_delay
        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    def payload(self, run: dict[str, Any]) -> str:
        body = {
            "type": f"run.{run.get('status')}",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "data": run,
        }
        return json.dumps(body, ensure_ascii=False, default=str)

    async def deliver(self, run_id: str, run: dict[str, Any]) -> bool:
        """Deliver ``run`` to its callback URL, retrying with back-off; True once a 2xx."""
        record = self.records.get(run_id)
        if record is None or not record.callback_url or record.callback_state != "pending":
            return record is not None and record.callback_state == "delivered"
        data = self.payload(run)
        done = record.callback_attempts
        while done < self.attempts:
            if done:
                await asyncio.sleep(min(self.first_delay * 2 ** (done - 1), MAX_DELAY))
            now = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "user-agent": "steprun-service",
                "webhook-id": record.callback_id or f"msg_{run_id}",
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.webhook.sign(
                    record.callback_id or f"msg_{run_id}", now, data
                ),
            }
            error: str | None = None
            try:
                response = await self._client.post(
                    record.callback_url, content=data.encode(), headers=headers
                )
                if not response.is_success:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"
            done += 1
            self.records.callback_attempted(run_id, delivered=error is None, error=error)
            if error is None:
                return True
        self.records.callback_given_up(run_id)
        return False


__all__ = ["Callbacks", "load_or_create_secret", "new_secret"]
