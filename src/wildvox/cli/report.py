"""``wildvox report``: the first paper's Table I, SVM baseline and Figure 1 on a corpus."""

from __future__ import annotations

import shlex
from pathlib import Path

import torch
import typer

from wildvox.api import load_model
from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.cli.common import out as stdout
from wildvox.cli.scoring import user_errors
from wildvox.inference.model_io import ModelFileError
from wildvox.reports.paper import PRESETS, paper_report


def _subset(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        fail(f"--subset must be N,M (two whole numbers), got {value!r}")
    n, m = (int(p) for p in parts)
    if n < 2 or m < 2:
        fail(f"--subset needs N >= 2 identification and M >= 2 verification speakers: {value}")
    return n, m


def _command(
    data: Path,
    out: Path,
    quick: bool,
    tiny: bool,
    seed: int,
    subset: str | None,
    model: Path | None,
) -> str:
    """The command line that reproduces this run, options in a fixed order."""
    args = ["wildvox", "report", "--data", str(data), "--out", str(out), "--seed", str(seed)]
    args += ["--quick"] * quick + ["--tiny"] * tiny
    args += ["--subset", subset] if subset else []
    args += ["--model", str(model)] if model else []
    return shlex.join(args)


def report(
    data: Path | None = typer.Option(None, help="Corpus root (default: wildmix)."),
    out: Path = typer.Option(Path("results/report"), help="Report folder."),
    quick: bool = typer.Option(
        False, "--quick", help="Figure 1 fitted on 20 utterances a speaker."
    ),
    tiny: bool = typer.Option(False, "--tiny", help="A 5-speaker slice (tests)."),
    seed: int = typer.Option(0, help="Seed of every draw (subset, caps, K-Means, PCA)."),
    subset: str | None = typer.Option(
        None,
        help="N,M: draw N identification speakers (gender preserving) and M further "
        "verification speakers instead of the corpus' own lists.",
    ),
    model: Path | None = typer.Option(None, help="Exported model folder (default: shipped)."),
    threads: int = typer.Option(1, help="torch CPU threads (0: torch's default)."),
) -> None:
    """Table I, the gender-preserving subset, the RBF-SVM baseline and Figure 1 of *Speaker
    Recognition in the Wild*: report.md, report.json and PNG figures under --out."""
    setup_logging()
    if threads > 0:
        torch.set_num_threads(threads)
    root = resolve_data(data)
    pick = _subset(subset)
    preset = PRESETS["tiny" if tiny else "quick" if quick else "full"]
    command = _command(data or root, out, quick, tiny, seed, subset, model)
    with user_errors():
        try:
            exported = load_model(model, backend="torch").exported
        except ModelFileError as exc:
            raise ValueError(str(exc)) from None
        result = paper_report(
            root, out, exported, preset=preset, seed=seed, subset=pick, command=command,
            progress=progress_bar,
        )  # fmt: skip
    stdout.print((out / "report.md").read_text(), markup=False, highlight=False)
    console.print(f"report written to {out / 'report.md'} ({result['total seconds']} s)")
