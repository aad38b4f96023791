"""The loss-curve chart: one component for the dashboard and the move-off report.

A job's ``metrics`` events (``train_loss``, ``valid_loss``, ``train_mean_token_accuracy``,
``valid_mean_token_accuracy``, by ``step``) become a plotly figure: losses on the left
axis, accuracies on the right, each checkpoint a dashed line at its step. plotly is an
optional extra (``steprun[dashboard]`` or ``steprun[report]``); plotly.js comes from the
installed package, for the dashboard to serve or a report to inline: never from a CDN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SERIES = (
    ("train_loss", "train loss", "y"),
    ("valid_loss", "validation loss", "y"),
    ("train_mean_token_accuracy", "train accuracy", "y2"),
    ("valid_mean_token_accuracy", "validation accuracy", "y2"),
)


def metrics_points(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``data`` of each metrics event, oldest first (events come newest first)."""
    points = [
        dict(e["data"])
        for e in events
        if e.get("type") == "metrics"
        and isinstance(e.get("data"), Mapping)
        and isinstance(e["data"].get("step"), int | float)
    ]
    return sorted(points, key=lambda p: p["step"])


def loss_figure(
    points: list[dict[str, Any]], checkpoint_steps: Iterable[int] = (), title: str | None = None
) -> dict[str, Any]:
    """A plotly figure (as JSON) of the metrics; raises ImportError without plotly."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for key, name, axis in SERIES:
        xs = [p["step"] for p in points if p.get(key) is not None]
        if xs or key == "train_loss":  # the train loss trace is always there, even empty
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=[p[key] for p in points if p.get(key) is not None],
                    name=name,
                    mode="lines+markers",
                    yaxis=axis,
                    line={"dash": "dot"} if axis == "y2" else {},
                )
            )
    for step in sorted(set(checkpoint_steps)):
        figure.add_vline(
            x=step, line_dash="dash", line_color="#888", annotation_text=f"checkpoint {step}"
        )
    figure.update_layout(
        margin={"l": 50, "r": 50, "t": 30, "b": 40},
        xaxis={"title": {"text": "step"}},
        yaxis={"title": {"text": "loss"}},
        yaxis2={"title": {"text": "accuracy"}, "overlaying": "y", "side": "right", "range": [0, 1]},
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
        height=420,
    )
    if title:
        figure.update_layout(title={"text": title}, margin={"t": 60})
    result: dict[str, Any] = figure.to_plotly_json()
    return result


def figure_html(figure: dict[str, Any]) -> str:
    """A figure as an HTML fragment with plotly.js inlined (for a self-contained page)."""
    import plotly.io

    html: str = plotly.io.to_html(figure, full_html=False, include_plotlyjs=True)
    return html


def plotly_js() -> Path | None:
    """plotly.min.js as the installed plotly package ships it, or None without plotly."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


__all__ = ["SERIES", "figure_html", "loss_figure", "metrics_points", "plotly_js"]
