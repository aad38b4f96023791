"""An Airflow connection as a steprun authorization.

Connection fields map as an OpenAI connection's would: ``password`` is the API key,
``host`` the base URL (``https://api.openai.com/v1`` when empty), ``login`` the
organization; ``extra`` holds ``provider`` (default ``openai``), ``project`` and any
provider setting (``job_seconds`` for ``local``, ``timeout``, ``max_retries``). Airflow
keeps the secret; steprun gets it at run time and registers it with the redactor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from ..runtime.authorizations import Authorization, resolve_authorization
from ..runtime.secrets import Redactor

DEFAULT_CONN_ID = "steprun_default"


class SteprunHook(BaseHook):
    conn_name_attr = "steprun_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "steprun"
    hook_name = "steprun"

    def __init__(self, steprun_conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.steprun_conn_id = steprun_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"password": "API key", "host": "Base URL", "login": "Organization"},
            "placeholders": {
                "host": "https://api.openai.com/v1",
                "extra": '{"provider": "openai"}',
            },
        }

    def spec(self) -> dict[str, Any]:
        """The connection as an authorization spec, the way a flow file writes one."""
        conn = self.get_connection(self.steprun_conn_id)
        extra = dict(conn.extra_dejson or {})
        spec: dict[str, Any] = {"provider": extra.pop("provider", "openai"), **extra}
        if conn.password:
            spec["api_key"] = conn.password
        if conn.host:
            spec["base_url"] = conn.host if "://" in conn.host else f"https://{conn.host}"
        if conn.login:
            spec["organization"] = conn.login
        return spec

    def authorization(self, redactor: Redactor | None = None) -> Authorization:
        """The resolved authorization, named after the connection."""
        return resolve_authorization(
            self.steprun_conn_id,
            self.spec(),
            environ={},
            base_dir=Path.cwd(),
            redactor=redactor or Redactor(),
        )


__all__ = ["DEFAULT_CONN_ID", "SteprunHook"]
