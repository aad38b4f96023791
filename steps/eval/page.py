"""The report as one self-contained HTML page: no CDN, no file beside it.

The loss curve is drawn by plotly (the optional extra ``steprun[report]``), with plotly.js
inlined from the installed package; without it the page says how to get the chart and
still lists the curve's points. Everything from a model or a file is escaped (Jinja2's
autoescape): an answer can hold any text.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

EXTRA = "pip install 'steprun[report]'"

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .35rem .6rem; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 28rem; white-space: pre-wrap; }
.note { color: #555; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="note">Generated {{ generated_at }}. Reference: <code>{{ reference_model or "-" }}</code>;
candidate: <code>{{ candidate_model or "-" }}</code>.</p>
<h2>Summary</h2>
<table>
<tr><th>examples compared</th><td class="num">{{ summary.examples }}</td></tr>
<tr><th>exact match</th><td class="num">{{ "%.1f" | format(summary.exact_match * 100) }}%</td></tr>
<tr><th>token F1 (mean)</th><td class="num">{{ "%.3f" | format(summary.token_f1) }}</td></tr>
<tr><th>similarity (mean)</th><td class="num">{{ "%.3f" | format(summary.similarity) }}</td></tr>
{% if summary.missing_in_candidate %}<tr><th>not answered by the candidate</th>
<td>{{ summary.missing_in_candidate | join(", ") }}</td></tr>{% endif %}
</table>
<p class="note">Exact match and token F1 as in SQuAD, on text lower-cased without punctuation,
articles and extra spaces; similarity is difflib's Ratcliff/Obershelp ratio on the same text.</p>
<h2>Loss curve of the replacement</h2>
{% if chart %}{{ chart | safe }}{% elif loss_curve %}<p class="note">The chart needs plotly:
<code>{{ extra }}</code>. The points:</p>{% else %}<p class="note">No metrics events were
given.</p>{% endif %}
{% if loss_curve %}<details><summary>{{ loss_curve | length }} points</summary>
<table><tr><th>step</th><th>train loss</th><th>valid loss</th></tr>
{% for p in loss_curve %}<tr><td class="num">{{ p.step }}</td>
<td class="num">{{ p.train_loss }}</td>
<td class="num">{{ p.valid_loss if p.valid_loss is not none else "" }}</td></tr>
{% endfor %}</table></details>{% endif %}
<h2>Per example</h2>
<table>
<tr><th>#</th><th>prompt</th><th>reference</th><th>candidate</th><th>exact</th><th>F1</th>
<th>similarity</th></tr>
{% for e in examples %}<tr><td class="num">{{ e.index }}</td><td class="text">{{ e.prompt }}</td>
<td class="text">{{ e.reference }}</td><td class="text">{{ e.candidate }}</td>
<td class="num">{{ "%.0f" | format(e.exact_match) }}</td>
<td class="num">{{ "%.3f" | format(e.token_f1) }}</td>
<td class="num">{{ "%.3f" | format(e.similarity) }}</td></tr>
{% endfor %}</table>
</body>
</html>
"""


def loss_chart(curve: list[dict[str, Any]], title: str) -> str | None:
    """The loss curve as an HTML fragment with plotly.js inlined; None without plotly.

    The same chart component as the dashboard's job page (steprun.runtime.charts).
    """
    if not curve:
        return None
    try:
        from steprun.runtime.charts import figure_html, loss_figure

        return figure_html(loss_figure(curve, title=title))
    except ImportError:
        return None


def render(report: dict[str, Any], chart: str | None) -> str:
    environment = Environment(autoescape=True, keep_trailing_newline=True)
    return environment.from_string(_TEMPLATE).render(**report, chart=chart, extra=EXTRA)


__all__ = ["EXTRA", "loss_chart", "render"]
