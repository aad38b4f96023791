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
@handled
def schema(step_type: str) -> None:
    """Print the config JSON Schema of STEP_TYPE (or of the flow file: `steprun schema flow`)."""
    from ..runtime import Runtime

    runtime = Runtime()
    found = runtime.schemas.builtin("flow.schema.json") if step_type == "flow" else None
    click.echo(json.dumps(found or runtime.step_schema(step_type), indent=2))


__all__ = ["schema", "steps"]
