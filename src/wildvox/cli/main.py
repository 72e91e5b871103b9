"""The ``wildvox`` application: one typer app, commands defined one group per file.

Command modules import torch, numpy and the model code; they are imported only when their
command runs (or its own ``--help`` is asked for), so that ``wildvox --help`` and
``wildvox --version`` answer at once. ``COMMANDS`` lists each command's module, function and
the one-line help shown in ``wildvox --help``.
"""

from __future__ import annotations

import importlib

import typer
from typer import _click as click  # typer 0.29 vendors click: its classes, not click's
from typer.core import TyperCommand, TyperGroup

import wildvox

#: name -> (module under wildvox.cli, attribute, one-line help for ``wildvox --help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("train", "train", "Train a speaker embedding model; writes checkpoints and the "
              "exported model (calibrated when the recipe has a calibration section)."),
    "augment": ("augment", "augment", "Write augmented copies of the recipe's training "
                "data (its augment settings)."),
    "embed": ("evaluate", "embed", "Embed audio files (full length, batched by length) into an "
              ".npz with utterance ids."),
    "score": ("evaluate", "score", "Score a trial list: cosine, or the model's own scoring "
              "with --model."),
    "evaluate": ("evaluate", "evaluate", "EER and MinDCF of a score file, or verification + "
                 "identification of a model on a corpus."),
    "compare": ("compare", "compare", "Evaluate each run's exported model (EER, MinDCF; "
                "top-1/top-5) and write one table row per run."),
    "demo": ("demo", "demo", "The shipped model on wildmix: calibrated verification, "
             "enrolment, identification."),
    "train-demo": ("demo", "train_demo", "Train on the corpus' identification training "
                   "part, evaluate, and write a report."),
    "calibrate-model": ("ship", "calibrate_model", "Fit the model's score normalisation and "
                        "calibration on held-out speakers."),
    "export-onnx": ("ship", "export_onnx", "Add an ONNX Runtime copy of the embedder to a "
                    "model folder (faster CPU inference)."),
    "verify": ("product", "verify", "Same speaker? Two recordings, or many pairs with --pairs. "
               "Exit 0 accept, 1 reject, 2 error."),
    "enroll": ("product", "enroll", "Enroll (or add recordings to) a speaker."),
    "identify": ("product", "identify", "Who is speaking? Files, folders or --list. Exit 0 "
                 "named, 1 unknown, 2 error."),
    "normalize": ("scoring", "normalize", "Adaptive symmetric score normalisation (AS-Norm) "
                  "of a score file."),
    "calibrate": ("scoring", "calibrate", "Fit a logistic calibration on a score file, or "
                  "apply one to get LLR score files."),
    "fuse": ("scoring", "fuse", "Fuse several systems' scores."),
    "backend-report": ("scoring", "backend_report_command", "Cosine vs AS-Norm vs PLDA and raw "
                       "vs calibrated scores of a model on a corpus."),
    "speakers": ("product", "speakers_app", "List, show, remove, export and import enrolled "
                 "speakers."),
    "serve": ("serve", "serve_app", "HTTP service and web page; `serve keys` manages API keys."),
    "report": ("report", "report", "The first paper's Table I, SVM baseline and K-Means figure."),
    "diarize": ("diarize", "diarize", "Who spoke when (RTTM, JSON, timeline PNG), named from "
                "the store; --segments-only: window embeddings."),
}  # fmt: skip


def load_command(name: str) -> click.Command:
    """Import command ``name``'s module and build its click command."""
    module, attr, _ = COMMANDS[name]
    target = getattr(importlib.import_module(f"wildvox.cli.{module}"), attr)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name)(target)
    return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """A typer group whose commands are imported on first use (see :data:`COMMANDS`)."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:  # the group's help: the one-line help, nothing imported
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][2])
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wildvox {wildvox.__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    name="wildvox",
    cls=LazyGroup,
    help="Speaker identification and verification in the wild.\n\n"
    "Results go to stdout (tables or --json / --jsonl), logs and progress to stderr. "
    "verify exits 0 on accept, 1 on reject; identify 0 when a speaker is named, 1 for "
    "unknown; 2 is an error everywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Speaker identification and verification in the wild."""


if __name__ == "__main__":
    app()
