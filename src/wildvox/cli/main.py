"""The ``wildvox`` application: one typer app, commands defined one group per file."""

from __future__ import annotations

import typer

from wildvox.cli.demo import demo
from wildvox.cli.evaluate import embed, evaluate, score
from wildvox.cli.train import train

app = typer.Typer(
    name="wildvox",
    help="Speaker identification and verification in the wild.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(train)
app.command()(embed)
app.command()(score)
app.command()(evaluate)
app.command()(demo)

if __name__ == "__main__":
    app()
