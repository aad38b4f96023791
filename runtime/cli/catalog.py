"""`steprun steps` and `steprun schema`: what step types exist and what they accept."""

from __future__ import annotations

import json

import click

from .common import cli, handled


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@handled
def steps(as_json: bool) -> None:
    """List the step types: type, version, title."""
    from ..runtime import Runtime

    runtime = Runtime()
    rows = [
        {"type": t.type, "version": t.version, "title": t.title, "effect": t.effect}
        for t in runtime.step_types.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["type"]) for r in rows), default=4)
    for row in rows:
        click.echo(f"{row['type']:<{width}}  {row['version']:<7}  {row['title']}")


@cli.command()
@click.argument("step_type")
@click.option(
    "--fields",
    "as_fields",
    is_flag=True,
    help="A table of the settings (name, type, default, allowed values, description).",
)
@handled
def schema(step_type: str, as_fields: bool) -> None:
    """Print the config JSON Schema of STEP_TYPE (or of the flow file: `steprun schema flow`).

    The schema is self-contained: what it refers to in shared definitions is inlined.
    """
    from ..runtime import Runtime

    runtime = Runtime()
    found = runtime.schemas.builtin("flow.schema.json") if step_type == "flow" else None
    whole = runtime.schemas.self_contained(found or runtime.step_schema(step_type))
    if not as_fields:
        click.echo(json.dumps(whole, indent=2))
        return
    from ..service.dashboard.forms import fields

    rows = [["SETTING", "TYPE", "DEFAULT", "ALLOWED", "DESCRIPTION"]]
    for field in fields(whole, {}):
        name = field.name + (" *" if field.required else "")
        allowed = ", ".join(field.choices) or "-"
        rows.append([name, field.type_label or "any", field.default or "-", allowed])
        rows[-1].append(field.description)  # last: as long as it is, never cut
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    click.echo("* required", err=True)


__all__ = ["schema", "steps"]
