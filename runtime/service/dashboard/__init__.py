"""The dashboard of ``steprun serve``: runs, steps, reports and live loss curves, in a browser.

Server-rendered pages under ``/ui`` (Jinja2, autoescaped), one small script of ours and
plotly.js from the installed plotly package (``pip install 'steprun[dashboard]'``):
nothing is loaded from outside. A session cookie from the login form guards every page;
forms carry a CSRF token; the Content-Security-Policy allows scripts from this service only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.routing import Route

from . import views
from .session import Sessions

TEMPLATES = Path(__file__).parent / "templates"


def templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def routes() -> list[Route]:
    return [
        Route("/ui/login", views.login, methods=["GET", "POST"]),
        Route("/ui/logout", views.logout, methods=["POST"]),
        Route("/ui/", views.runs_page),
        Route("/ui/runs/table", views.runs_table),
        Route("/ui/events", views.changes),
        Route("/ui/runs/{run_id}", views.run_page),
        Route("/ui/runs/{run_id}/body", views.run_steps),
        Route("/ui/runs/{run_id}/cancel", views.cancel_run, methods=["POST"]),
        Route("/ui/runs/{run_id}/resume", views.resume_run, methods=["POST"]),
        Route("/ui/runs/{run_id}/jobs/{job_id}", views.job_page),
        Route("/ui/runs/{run_id}/jobs/{job_id}/data", views.job_json),
        Route("/ui/runs/{run_id}/jobs/{job_id}/cancel", views.cancel_job, methods=["POST"]),
        Route("/ui/steps", views.catalog),
        Route("/ui/steps/{step_type}", views.step_page),
        Route("/ui/static/{name}", views.static),
    ]


__all__ = ["Sessions", "routes", "templates"]
