"""``wildvox demo`` (the shipped model at work), ``wildvox calibrate-model`` and
``wildvox export-onnx``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from wildvox.api import PRETRAINED, load_model
from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.cli.demo import train_demo
from wildvox.config import ConfigError, load_config
from wildvox.data.corpora.voxceleb import CorpusError, load_corpus
from wildvox.data.manifest import Utterance
from wildvox.data.trials import read_trials
from wildvox.evaluation import embed_ids
from wildvox.inference.calibration import fit_model_calibration
from wildvox.inference.cohort import COHORT_FILE, ScoreCohort
from wildvox.inference.extract import Extraction, extract_embeddings
from wildvox.inference.model_io import (
    WEIGHTS,
    ExportedModel,
    ModelFileError,
    load_exported,
    update_model_extra,
)
from wildvox.inference.onnx_runtime import OnnxExportError, export_embedder
from wildvox.report import write_sections
from wildvox.scoring.asnorm import make_cohort
from wildvox.showcase import run_showcase


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
        raise
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


def _per_speaker(utts: list[Utterance], limit: int, seed: int) -> list[Utterance]:
    """At most ``limit`` utterances of each speaker, drawn with ``seed``, in list order."""
    rng = np.random.default_rng(seed)
    by_spk: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        by_spk.setdefault(u.speaker, []).append(i)
    keep = sorted(j for idx in by_spk.values() for j in rng.permutation(idx)[:limit].tolist())
    return [utts[i] for i in keep]


def _embed(exported: ExportedModel, utts: list[Utterance], what: str) -> Extraction:
    f = exported.config
    with progress_bar(f"embedding {what}", len(utts)) as advance:
        return extract_embeddings(
            exported.net, [str(u.path) for u in utts], sample_rate=f.features.sample_rate,
            batch_seconds=f.eval.batch_seconds, max_seconds=f.eval.max_seconds,
            min_seconds=f.dataset.min_seconds, on_error="skip", progress=advance,
        )  # fmt: skip


def calibrate_model(
    model: Path = typer.Option(..., help="Exported model folder to calibrate (updated in place)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe with `calibration`."),
    data: Path | None = typer.Option(None, help="Corpus root for ${data}."),
    per_speaker: int = typer.Option(80, help="At most this many utterances per speaker."),
    cohort_per_speaker: int = typer.Option(
        20, help="Training utterances per speaker for the AS-Norm cohort (0: no cohort)."
    ),
    top_n: int = typer.Option(100, help="AS-Norm: cohort scores kept per side."),
    seed: int = typer.Option(0),
) -> None:
    """Fit the model's score normalisation (an AS-Norm cohort of its training speakers) and its
    calibration and operating points on held-out speakers."""
    setup_logging()
    try:
        exported = load_exported(model)
        cfg = load_config(config, data_root=str(resolve_data(data))) if config else exported.config
        corpora = cfg.calibration
        if not corpora:
            fail("the recipe has no `calibration` corpora (held-out speakers)")
        utts = [u for c in corpora for u in load_corpus(c)]
        train = [u for c in cfg.dataset.train for u in load_corpus(c)] if cohort_per_speaker else []
    except (ModelFileError, ConfigError, CorpusError) as exc:
        fail(str(exc))
        raise
    cohort = None
    if train:
        members = _per_speaker(train, cohort_per_speaker, seed)
        ext = _embed(exported, members, "cohort")
        means = make_cohort(ext.embeddings, np.array([members[i].speaker for i in ext.ok]))
        cohort = ScoreCohort.from_embeddings(means, top_n)
        console.print(f"AS-Norm cohort: {len(means)} training speakers, top {cohort.top_n}")
    chosen = _per_speaker(utts, per_speaker, seed)
    ext = _embed(exported, chosen, "held-out speakers")
    speakers = [chosen[i].speaker for i in ext.ok]
    cal = fit_model_calibration(ext.embeddings, ext.durations, speakers, seed=seed, cohort=cohort)
    if cohort is not None:  # the cohort and the calibration fitted on its scores, together
        cohort.save(model)
    else:
        (model / COHORT_FILE).unlink(missing_ok=True)
    update_model_extra(model, "calibration", cal.to_dict())
    console.print(
        f"calibration fitted on {cal.trials} trials of {len(set(speakers))} held-out speakers "
        f"({cal.score} scores); thresholds (LLR): "
        f"{', '.join(f'{k} {v:.2f}' for k, v in cal.thresholds.items())}"
    )


def export_onnx(
    model: Path = typer.Option(..., help="Exported model folder (embedder.onnx is added)."),
) -> None:
    """Add an ONNX Runtime copy of the embedder to a model folder (faster CPU inference)."""
    setup_logging()
    try:
        exported = load_exported(model)
        feat_dim = int(exported.net.features.out_dim)  # type: ignore[arg-type]
        path = export_embedder(exported.net.embedder, feat_dim, exported.model_id, model)
    except (ModelFileError, OnnxExportError) as exc:
        fail(str(exc))
        raise
    console.print(f"wrote {path}; load_model() now runs the embedder in ONNX Runtime")
