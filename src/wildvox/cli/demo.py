"""``wildvox demo`` (the shipped model at work on a corpus: ``results/showcase``) and
``wildvox train-demo`` (train, evaluate, report: ``results/<run>/report.{md,json}``)."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from wildvox.api import PRETRAINED, load_model
from wildvox.audio.io import AudioError, audio_info
from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.cli.train import run_training
from wildvox.config import ConfigError, load_config
from wildvox.data.corpora.voxceleb import audio_root, load_iden_split, read_meta, training_data
from wildvox.data.manifest import Utterance
from wildvox.data.trials import read_trials
from wildvox.inference.model_io import WEIGHTS, ModelFileError, load_exported
from wildvox.reports.evaluation import (
    embed_ids,
    evaluate_identification,
    evaluate_verification,
    mean_fbank_baseline,
)
from wildvox.reports.render import write_report, write_sections
from wildvox.reports.showcase import run_showcase

DEFAULT_RECIPE = Path("recipes/default.yaml")


def _stats(
    paths: Sequence[Path], speakers: set[str], meta: dict[str, dict[str, str]]
) -> dict[str, Any]:
    seconds = 0.0
    for p in paths:
        try:
            seconds += audio_info(p).duration
        except AudioError:
            continue
    out: dict[str, Any] = {"speakers": len(speakers), "utterances": len(paths),
                           "hours": seconds / 3600}  # fmt: skip
    genders = [
        meta[s].get("gender", meta[s].get("Gender", "")).strip().lower()[:1]
        for s in (sp.rsplit("/", 1)[-1] for sp in speakers)
        if s in meta
    ]
    if genders:
        out["female share"] = genders.count("f") / len(genders)
    return out


def data_statistics(train: list[Utterance], root: Path, trials_name: str) -> dict[str, Any]:
    """Speakers, utterances, hours and (from the corpus' ``meta.csv``) the female share of
    speakers of each part of the corpus."""
    iden = load_iden_split(root)
    test = [u for u in iden if u.split == 3]
    val = [u for u in iden if u.split == 2]
    trials = read_trials(root / trials_name)
    ids = trials.utterances()
    wav = audio_root(root)
    meta = read_meta(root / "meta.csv") if (root / "meta.csv").is_file() else {}
    return {
        "train": _stats([u.path for u in train], {u.speaker for u in train}, meta),
        "validation (iden split 2)": _stats([u.path for u in val], {u.speaker for u in val}, meta),
        "identification test (split 3)": _stats(
            [u.path for u in test], {u.speaker for u in test}, meta
        ),
        f"verification ({trials_name}, {len(trials)} trials)": _stats(
            [wav / i for i in ids], {i.split("/", 1)[0] for i in ids}, meta
        ),
    }


def train_demo(
    data: Path | None = typer.Option(None, help="Corpus root (default: wildmix)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe YAML."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. train.epochs=3."),
    run: str | None = typer.Option(None, help="Run name (default: the recipe's name)."),
    fresh: bool = typer.Option(False, help="Retrain even if the run has a trained model."),
    workers: int = typer.Option(1, help="Decoding worker processes for evaluation."),
) -> None:
    """Train on the corpus' identification training part, evaluate, and write a report."""
    setup_logging()
    started = time.perf_counter()
    if config is None and DEFAULT_RECIPE.is_file():
        config = DEFAULT_RECIPE
    root = resolve_data(data)
    try:
        cfg = load_config(config, set_, data_root=str(root))
    except ConfigError as exc:
        fail(str(exc))
    name = run or cfg.name
    run_dir, results = Path("runs") / name, Path("results") / name
    train, _ = training_data(cfg)
    model_dir = run_dir / "model"
    if fresh or not (model_dir / WEIGHTS).is_file():
        result = run_training(cfg, run_dir, resume=not fresh)
        history = [vars(h) for h in result.history]
        model_dir = result.model_dir
    else:
        console.print(f"using the trained model in {model_dir} (--fresh retrains)")
        history = []
    model = load_exported(model_dir)
    console.print("evaluating verification ...")
    trials = read_trials(root / cfg.eval.trials)
    with progress_bar("embedding trials", len(trials.utterances())) as advance:
        ver = evaluate_verification(
            model, root, cfg.eval.trials, num_workers=workers, progress=advance,
            embeddings_out=results / "veri_embeddings.npz",
        )  # fmt: skip
    console.print("evaluating identification ...")
    iden = evaluate_identification(model, root, cfg.eval.iden_split, num_workers=workers)
    console.print("scoring the mean-fbank baseline ...")
    baseline = mean_fbank_baseline(root, trials)
    params = sum(p.numel() for p in model.net.parameters())
    report: dict[str, Any] = {
        "run": name,
        "command": shlex.join(["wildvox", *sys.argv[1:]]),
        "corpus": str(root),
        "trials": cfg.eval.trials,
        "data": data_statistics(train, root, cfg.eval.trials),
        "verification": {
            f"{cfg.model.backbone} + cosine": ver.metrics,
            "mean log-Mel + cosine (baseline)": baseline,
        },
        "identification": {f"{cfg.model.backbone} ({cfg.head.name} head)": iden},
        "training": {
            "train seconds": round(float(model.extra.get("train_seconds", 0.0)), 1),
            "epochs": model.extra.get("epochs"),
            "demo wall seconds": round(time.perf_counter() - started, 1),
        },
        "history": history,
        "model": {
            "id": model.model_id,
            "backbone": cfg.model.backbone,
            "pooling": cfg.model.pooling,
            "head": cfg.head.name,
            "embedding": cfg.model.embed_dim,
            "parameters (embedder)": params,
            "weights MB": round((model_dir / WEIGHTS).stat().st_size / 1e6, 2),
        },
    }
    json_path, md_path = write_report(results, report)
    console.print(md_path.read_text())
    console.print(f"report written to {md_path} and {json_path}")


def demo(
    data: Path | None = typer.Option(None, help="Corpus root (default: wildmix)."),
    model: Path | None = typer.Option(None, help="Exported model (default: the shipped one)."),
    trials: str = typer.Option("veri_test.txt", help="Trial list inside the corpus root."),
    out: Path = typer.Option(Path("results/showcase"), help="Report folder."),
    workers: int = typer.Option(1, help="Decoding worker processes."),
) -> None:
    """The shipped model on wildmix: calibrated verification, enrolment, identification."""
    setup_logging()
    started = time.perf_counter()
    root = resolve_data(data)
    if model is None and not (PRETRAINED / WEIGHTS).is_file():
        console.print("no shipped model in this installation: training one with the demo recipe")
        train_demo(data=root, config=None, set_=[], run=None, fresh=False, workers=workers)
        return
    try:
        m = load_model(model)
    except ModelFileError as exc:
        fail(str(exc))
    card = {
        "model id": m.model_id,
        "backbone": m.exported.config.model.backbone,
        "embedding": m.embed_dim,
        "calibrated": m.calibration is not None,
    }
    console.print(card)
    ids = read_trials(root / trials).utterances()
    with progress_bar("embedding", len(ids)) as advance:
        emb = embed_ids(m.exported, root, ids, num_workers=workers, progress=advance)
    results = run_showcase(m, emb, root / trials, out / "speakers.sqlite")
    results["model"] = card
    results["run"] = {
        "corpus": str(root),
        "trials": trials,
        "utterances embedded": len(emb),
        "seconds": round(time.perf_counter() - started, 1),
    }
    _, md = write_sections(out, "wildvox: the shipped model on wildmix", results)
    console.print(md.read_text())
    console.print(f"report written to {md}")
