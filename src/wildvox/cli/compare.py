"""``wildvox compare``: evaluate training runs on one corpus and tabulate them side by side.

Each run folder is the ``--out`` of ``wildvox train`` (``model/``, ``config.yaml``,
``checkpoints/``). Its exported model is evaluated with
:mod:`wildvox.reports.evaluation`, the code of
``wildvox evaluate --model`` and ``wildvox train-demo``: cosine scoring of a trial list (EER,
MinDCF at p_target 0.01 and 0.05) and closed-set identification of the ``iden_split`` test part
by the model's head. Identification is reported only for runs that trained on split 1 (and not
on split 3) of the evaluated corpus' ``iden_split``; otherwise the speakers or the test
utterances would not fit, and the row says "n/a".

Results are cached in ``RUN/eval/`` (``<trials>.npz`` embeddings and ``compare.json`` metrics,
keyed by the model id, the corpus and the trial list), so a second ``compare`` over the same
runs only reads files. The markdown report keeps whatever follows a line ``<!-- notes -->`` in
an existing report, so hand-written commentary survives a re-run.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.config import Config
from wildvox.data.corpora.voxceleb import CorpusError, load_corpus
from wildvox.data.files import atomic_write
from wildvox.data.trials import TrialError, read_trials
from wildvox.inference.model_io import ExportedModel, ModelFileError, load_exported
from wildvox.reports.evaluation import evaluate_identification, evaluate_verification
from wildvox.reports.render import render_sections
from wildvox.training.checkpoint import CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)

CACHE_DIR = "eval"
CACHE_FILE = "compare.json"
NOTES_MARKER = "<!-- notes -->"


class RunFolderError(ValueError):
    """A run folder without a readable exported model."""


@dataclass
class RunEvaluation:
    """One run's figures: ``verification`` (``eer`` as a fraction, ``min_dcf_0.01``,
    ``min_dcf_0.05``) and ``identification`` (``top1``, ``top5`` fractions, ... ; None when the
    run did not train on the corpus' identification training part)."""

    verification: dict[str, float]
    identification: dict[str, Any] | None
    cached: bool


def trained_on_iden_train(cfg: Config, root: Path) -> bool:
    """Whether ``cfg`` trained on split 1 (and not split 3) of ``root``'s ``eval.iden_split``."""
    iden = (root / cfg.eval.iden_split).resolve()
    return any(
        (Path(c.root).expanduser() / c.list).resolve() == iden
        and 1 in c.splits
        and 3 not in c.splits
        for c in cfg.dataset.train
    )


def _cache_key(model: ExportedModel, root: Path, trials: str) -> dict[str, str]:
    return {"model_id": model.model_id, "data": str(root.resolve()), "trials": trials}


def load_run(run_dir: Path) -> ExportedModel:
    """The exported model of a run folder (``run_dir/model``).

    Raises:
        RunFolderError: it is missing or not a valid exported model.
    """
    try:
        return load_exported(run_dir / "model")
    except ModelFileError as exc:
        raise RunFolderError(f"{run_dir}: no usable exported model ({exc})") from exc


def evaluate_run(
    run_dir: Path, model: ExportedModel, root: Path, trials: str = "veri_test.txt", *,
    num_workers: int = 1, fresh: bool = False,
) -> RunEvaluation:  # fmt: skip
    """Verification and (where it applies) identification figures of ``model`` (the run's
    exported model) on the corpus at ``root``, read from ``run_dir/eval/`` when cached there
    for this model id, corpus and trial list; computed and cached otherwise."""
    cache_path = run_dir / CACHE_DIR / CACHE_FILE
    key = _cache_key(model, root, trials)
    cached: dict[str, Any] = {}
    if cache_path.is_file() and not fresh:
        try:
            cached = json.loads(cache_path.read_text())
        except json.JSONDecodeError:
            logger.warning("%s: unreadable cache, evaluating again", cache_path)
        if cached.get("key") != key:
            cached = {}
    if "verification" in cached and "identification" in cached:
        return RunEvaluation(cached["verification"], cached["identification"], cached=True)
    n = len(read_trials(root / trials).utterances())
    with progress_bar(f"{run_dir.name}: embedding trials", n) as advance:
        ver = evaluate_verification(
            model, root, trials, num_workers=num_workers, progress=advance,
            embeddings_out=run_dir / CACHE_DIR / f"{Path(trials).stem}.npz",
        )  # fmt: skip
    iden: dict[str, Any] | None = None
    if trained_on_iden_train(model.config, root):
        iden = evaluate_identification(
            model, root, model.config.eval.iden_split, num_workers=num_workers
        )
    result = {"key": key, "verification": ver.metrics, "identification": iden}
    atomic_write(cache_path, json.dumps(result, indent=1))
    return RunEvaluation(ver.metrics, iden, cached=False)


def training_facts(run_dir: Path, model: ExportedModel) -> dict[str, Any]:
    """What the run trained on and for how long: training utterances (recounted from the
    run's recipe; None when its lists are gone), epochs and seconds (model metadata), updates
    (the last checkpoint's step; None without it) and embedder parameters."""
    utterances: int | None = None
    try:
        utterances = sum(len(load_corpus(c, check_files=False)) for c in model.config.dataset.train)
    except (CorpusError, OSError) as exc:
        logger.warning("%s: cannot recount the training utterances (%s)", run_dir, exc)
    updates: int | None = None
    try:
        updates = int(load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"])
    except (CheckpointError, KeyError) as exc:
        logger.warning("%s: no training step count (%s)", run_dir, exc)
    seconds = model.extra.get("train_seconds")
    return {
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "utterances": utterances,
        "epochs": model.extra.get("epochs"),
        "updates": updates,
        "train_seconds": None if seconds is None else round(float(seconds), 1),
    }


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f} %"


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.4f}"


def _int(x: Any) -> str:
    return "n/a" if x is None else f"{int(x):,}"


def table_row(name: str, cfg: Config, facts: dict[str, Any], ev: RunEvaluation) -> dict[str, str]:
    """One markdown table row (column -> cell text) of a run."""
    v, i = ev.verification, ev.identification or {}
    return {
        "run": name,
        "backbone": cfg.model.backbone,
        "pooling": cfg.model.pooling,
        "head": cfg.head.name,
        "params": _int(facts["parameters"]),
        "train utts": _int(facts["utterances"]),
        "epochs": _int(facts["epochs"]),
        "updates": _int(facts["updates"]),
        "train s": _int(facts["train_seconds"]),
        "EER": _pct(v.get("eer")),
        "MinDCF0.01": _num(v.get("min_dcf_0.01")),
        "MinDCF0.05": _num(v.get("min_dcf_0.05")),
        "top-1": _pct(i.get("top1")),
        "top-5": _pct(i.get("top5")),
    }


def render_comparison(title: str, rows: list[dict[str, str]], setup: dict[str, Any]) -> str:
    """The report: the results table (one row per run), then the setup as a 2-column table."""
    return render_sections(title, {"Results": rows, "Setup": setup})


def kept_notes(path: Path) -> str:
    """The part of an existing report from the ``<!-- notes -->`` line on ("" if none)."""
    if not path.is_file():
        return ""
    text = path.read_text()
    at = text.find(NOTES_MARKER)
    return "" if at < 0 else text[at:]


def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders (the --out of wildvox train)."),
    data: Path | None = typer.Option(None, help="Corpus root (default: wildmix)."),
    output: Path = typer.Option(..., "-o", "--output", help="Markdown report to write."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures as JSON."),
    title: str = typer.Option("Model comparison", help="Report title."),
    trials: str = typer.Option("veri_test.txt", help="Trial list inside the corpus root."),
    workers: int = typer.Option(1, help="Decoding worker processes for evaluation."),
    fresh: bool = typer.Option(False, help="Ignore the cached figures in RUN/eval/."),
) -> None:
    """Evaluate each run's exported model (EER, MinDCF; top-1/top-5) and write one table row
    per run. Text after a '<!-- notes -->' line of an existing report is kept."""
    setup_logging()
    root = resolve_data(data)
    try:
        n_trials = len(read_trials(root / trials))
    except TrialError as exc:
        fail(str(exc))
    rows: list[dict[str, str]] = []
    figures: dict[str, Any] = {}
    for run_dir in runs:
        try:
            model = load_run(run_dir)
        except RunFolderError as exc:
            fail(str(exc))
        ev = evaluate_run(run_dir, model, root, trials, num_workers=workers, fresh=fresh)
        facts = training_facts(run_dir, model)
        rows.append(table_row(run_dir.name, model.config, facts, ev))
        figures[run_dir.name] = {
            "run_dir": str(run_dir), "model_id": model.model_id, "recipe": model.config.name,
            **facts, "verification": ev.verification, "identification": ev.identification,
        }  # fmt: skip
        console.print(
            f"{run_dir.name}: EER {rows[-1]['EER']}, top-1 {rows[-1]['top-1']}"
            + (" (cached)" if ev.cached else "")
        )
    setup = {
        "corpus": str(root),
        "trials": f"{trials} ({n_trials} trials), cosine scoring of full utterances",
        "identification": "iden_split test part (split 3) by the model's head; "
        "n/a when the run did not train on iden_split 1 of this corpus",
        "command": shlex.join(["wildvox", *sys.argv[1:]]),
    }
    notes = kept_notes(output)
    text = render_comparison(title, rows, setup)
    atomic_write(output, text + ("\n" + notes if notes else ""))
    if json_out is not None:
        atomic_write(json_out, json.dumps({"setup": setup, "runs": figures}, indent=2))
    console.print(f"report written to {output}")
