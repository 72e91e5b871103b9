"""The ``wildvox`` application: one typer app, commands defined one group per file."""

from __future__ import annotations

import typer

from wildvox.cli.augment import augment
from wildvox.cli.compare import compare
from wildvox.cli.demo import demo, train_demo
from wildvox.cli.evaluate import embed, evaluate, score
from wildvox.cli.product import enroll, identify, speakers_app, verify
from wildvox.cli.scoring import backend_report_command, calibrate, fuse, normalize
from wildvox.cli.ship import calibrate_model, export_onnx
from wildvox.cli.train import train

app = typer.Typer(
    name="wildvox",
    help="Speaker identification and verification in the wild.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(train)
app.command()(augment)
app.command()(embed)
app.command()(score)
app.command()(evaluate)
app.command()(compare)
app.command()(demo)
app.command("train-demo")(train_demo)
app.command("calibrate-model")(calibrate_model)
app.command("export-onnx")(export_onnx)
app.command()(verify)
app.command()(enroll)
app.command()(identify)
app.command()(normalize)
app.command()(calibrate)
app.command()(fuse)
app.command("backend-report")(backend_report_command)
app.add_typer(speakers_app, name="speakers")

if __name__ == "__main__":
    app()
