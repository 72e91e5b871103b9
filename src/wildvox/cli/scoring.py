"""``wildvox normalize``, ``calibrate``, ``fuse`` and ``backend-report``: the scoring back-end
on files.

Score files (``enrol test score [label]``) are read and written by
:mod:`wildvox.scoring.score_file`; the steps are the array functions of :mod:`wildvox.scoring`,
and the report is :mod:`wildvox.reports.backend`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import typer

from wildvox.audio.io import AudioError
from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.data.corpora.voxceleb import CorpusError, select_training_ids, speakers_of_ids
from wildvox.data.files import atomic_write
from wildvox.data.trials import TrialError, read_trials
from wildvox.inference.model_io import ModelFileError, load_exported
from wildvox.metrics.verification import llr_metrics
from wildvox.reports.backend import backend_report
from wildvox.reports.evaluation import embed_ids
from wildvox.scoring.asnorm import asnorm_from_stats, make_cohort, trial_stats
from wildvox.scoring.calibration import Calibration, trial_features
from wildvox.scoring.embeddings import EmbeddingSet, load_embeddings, save_embeddings
from wildvox.scoring.fusion import LogisticFusion, average_fusion
from wildvox.scoring.plda import NotFittedError
from wildvox.scoring.score_file import (
    ScoreFile,
    align_score_files,
    read_score_file,
    write_score_file,
)

CohortPer = Literal["speaker", "utterance"]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's input errors into a one-line ``error:`` and exit status 2."""
    try:
        yield
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else repr(exc))
    except (ValueError, OSError, NotFittedError, AudioError) as exc:
        fail(str(exc))


def _cohort(path: Path, per: CohortPer) -> tuple[np.ndarray, np.ndarray | None]:
    """Cohort rows (C, D) from an embedding file and each row's speaker (None if unknown)."""
    emb = load_embeddings(path)
    if per == "speaker":
        try:
            spk = speakers_of_ids(emb.ids)
        except ValueError as exc:
            raise ValueError(f"{path}: --cohort-per speaker needs speaker ids: {exc}") from None
        return make_cohort(emb.embeddings, spk, "speaker"), np.unique(spk)
    spk_u = speakers_of_ids(emb.ids) if all("/" in i for i in emb.ids) else None
    return make_cohort(emb.embeddings, np.zeros(len(emb)), "utterance"), spk_u


def _features(
    sf: ScoreFile,
    measures: Sequence[str],
    embeddings: Path | None,
    cohort: Path | None,
    top_n: int,
    per: CohortPer,
    duration_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """(N, 1 + 2Q) calibration features of a score file's trials (:func:`trial_features`)."""
    if not measures:
        return sf.scores[:, None]
    if embeddings is None:
        raise ValueError("quality measures need --embeddings of the trial utterances")
    emb = load_embeddings(embeddings)
    kw: dict[str, np.ndarray] = {}
    if "duration" in measures:
        if emb.durations is None:
            raise ValueError(f"{embeddings}: no durations stored (embed with `wildvox embed`)")
        kw["dur_a"] = emb.durations[emb.index(sf.enroll)]
        kw["dur_b"] = emb.durations[emb.index(sf.test)]
    if "imposter" in measures:
        if cohort is None:
            raise ValueError("the imposter quality measure needs --cohort")
        rows, c_spk = _cohort(cohort, per)
        kw["imp_a"], _, kw["imp_b"], _ = trial_stats(emb, sf.enroll, sf.test, rows, top_n, c_spk)
    return trial_features(sf.scores, measures, duration_range=duration_range, **kw)


def _report(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        console.print(summary)


def normalize(
    scores: Path = typer.Option(..., help="Score file (enrol test score [label])."),
    embeddings: Path = typer.Option(..., help="Embeddings of every trial utterance (.npz)."),
    cohort: Path = typer.Option(..., help="Cohort embeddings (.npz; ids 'speaker/...')."),
    top_n: int = typer.Option(100, help="Closest cohort entries per side (AS-Norm)."),
    method: Literal["asnorm", "snorm"] = typer.Option("asnorm", help="snorm: whole cohort."),
    cohort_per: CohortPer = typer.Option("speaker", help="Cohort of speaker means or utterances."),
    output: Path = typer.Option(..., "-o", "--output", help="Normalised score file."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Adaptive symmetric score normalisation (AS-Norm) of a score file.

    An utterance's own speaker is left out of its cohort (matters only when the cohort holds
    trial speakers).
    """
    setup_logging()
    with user_errors():
        sf = read_score_file(scores)
        emb = load_embeddings(embeddings)
        rows, c_spk = _cohort(cohort, cohort_per)
        n = None if method == "snorm" else top_n
        stats = trial_stats(emb, sf.enroll, sf.test, rows, n, c_spk)
        out = asnorm_from_stats(sf.scores, *stats)
        write_score_file(output, sf.enroll, sf.test, out, sf.labels)
    summary = {"trials": len(out), "cohort": int(rows.shape[0]), "top_n": n, "output": str(output)}
    _report(summary, json_out)


def calibrate(
    train: Path | None = typer.Option(None, help="Labeled score file to fit a calibration on."),
    apply: Path | None = typer.Option(None, help="Calibration (.json) to apply to --scores."),
    scores: Path | None = typer.Option(None, help="Score file to calibrate (with --apply)."),
    quality: list[str] = typer.Option(
        [], help="Quality measure for --train (repeatable): duration, imposter."
    ),
    embeddings: Path | None = typer.Option(None, help="Trial embeddings (durations) for QMFs."),
    cohort: Path | None = typer.Option(None, help="Cohort embeddings for the imposter measure."),
    top_n: int = typer.Option(100, help="Cohort entries of the imposter mean (--train)."),
    cohort_per: CohortPer = typer.Option("speaker", help="Cohort rows (--train)."),
    p_target: float = typer.Option(0.05, help="Target prior of the logistic objective."),
    output: Path = typer.Option(..., "-o", "--output", help="cal.json (--train), LLRs (--apply)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Fit a (quality-aware) logistic calibration, or apply one to get LLR score files."""
    setup_logging()
    if (train is None) == (apply is None):
        fail("give exactly one of --train (fit) and --apply (calibrate --scores)")
    summary: dict[str, Any]
    with user_errors():
        if train is not None:
            sf = read_score_file(train)
            labels = sf.require_labels()
            measures = list(dict.fromkeys(quality))
            feats = _features(sf, measures, embeddings, cohort, top_n, cohort_per)
            try:
                cal = Calibration.fit(
                    feats, labels, quality=measures, score=f"scores of {train.name}",
                    p_target=p_target,
                    cohort={"top_n": top_n, "per": cohort_per} if "imposter" in measures else {},
                    fitted_on=f"{train} ({len(labels)} trials)",
                )  # fmt: skip
            except ValueError as exc:
                raise ValueError(f"{train}: cannot fit a calibration: {exc}") from None
            atomic_write(output, json.dumps(cal.to_dict(), indent=1))
            summary = {"weights": cal.calibrator.to_dict()["weights"], "bias": cal.calibrator.bias,
                       "fit": llr_metrics(cal.calibrator.transform(feats), labels)}  # fmt: skip
        else:
            if apply is None or scores is None:
                raise ValueError("--apply needs --scores")
            if quality:
                raise ValueError("the quality measures come from the calibration file")
            try:
                cal = Calibration.from_dict(json.loads(apply.read_text()))
            except (ValueError, OSError) as exc:
                raise ValueError(f"{apply}: not a calibration file ({exc})") from None
            n = int(cal.cohort.get("top_n", 100))
            per: CohortPer = "utterance" if cal.cohort.get("per") == "utterance" else "speaker"
            sf = read_score_file(scores)
            feats = _features(sf, cal.quality, embeddings, cohort, n, per, cal.duration_range)
            llr = cal.calibrator.transform(feats)
            write_score_file(output, sf.enroll, sf.test, llr, sf.labels)
            summary = {"trials": len(llr), "output": str(output)}
            if sf.labeled and 0 < sf.labels.sum() < len(llr):
                summary["metrics"] = llr_metrics(llr, sf.labels)
    _report(summary, json_out)


def fuse(
    systems: list[Path] = typer.Argument(..., help="Score files of the systems (same trials)."),
    method: Literal["average", "logistic"] = typer.Option("average", help="Fusion rule."),
    train: list[Path] = typer.Option(
        [],
        help="Labeled score files of the same systems on calibration trials, same order "
        "(logistic); without them the fusion is fitted on the inputs' own labels (optimistic).",
    ),
    p_target: float = typer.Option(0.05, help="Target prior of the logistic objective."),
    output: Path = typer.Option(..., "-o", "--output", help="Fused score file."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Fuse several systems' scores: their mean (of calibrated LLRs), or logistic regression."""
    setup_logging()
    if len(systems) < 2:
        fail("fuse needs at least two score files")
    summary: dict[str, Any] = {}
    with user_errors():
        files = [read_score_file(p) for p in systems]
        m, labels = align_score_files(files)
        if method == "average":
            fused = average_fusion(m)
        else:
            if train and len(train) != len(systems):
                raise ValueError(f"{len(train)} --train files for {len(systems)} systems")
            tm, tl = (
                align_score_files([read_score_file(p) for p in train]) if train else (m, labels)
            )
            if (tl < 0).any():
                raise ValueError("logistic fusion needs labeled trials (labeled --train files)")
            fusion = LogisticFusion(p_target=p_target).fit(tm, tl)
            fused = fusion.transform(m)
            summary["weights"] = fusion.to_dict()["calibrator"]["weights"]
            summary["fitted on"] = "train files" if train else "the inputs (optimistic)"
        write_score_file(output, files[0].enroll, files[0].test, fused, labels)
        if (labels >= 0).all() and 0 < labels.sum() < len(labels):
            summary["metrics"] = llr_metrics(fused, labels)
    _report({"trials": len(fused), "output": str(output), **summary}, json_out)


def backend_report_command(
    model: Path = typer.Option(..., help="Exported model folder (runs/<name>/model)."),
    data: Path | None = typer.Option(None, help="Corpus root (default: wildmix)."),
    out: Path = typer.Option(Path("results/backend"), help="Report folder."),
    trials: str = typer.Option("veri_test.txt", help="Labeled trial list inside the corpus."),
    split: str = typer.Option("iden_split.txt", help="Identification list (split 1 = train)."),
    per_speaker: int = typer.Option(20, help="At most this many training utterances a speaker."),
    top_n: int = typer.Option(100, help="AS-Norm cohort size (speaker means)."),
    plda_dim: int = typer.Option(128, help="PLDA's LDA dimension (capped)."),
    system: Literal["cosine", "asnorm", "plda"] = typer.Option("asnorm", help="Calibrated."),
    calibration_trials: int = typer.Option(10000, help="Calibration trials per duration class."),
    seed: int = typer.Option(0),
    workers: int = typer.Option(1, help="Decoding worker processes."),
    threads: int = typer.Option(1, help="torch CPU threads (0: torch's default)."),
    json_out: bool = typer.Option(False, "--json", help="Print report.json instead of markdown."),
) -> None:
    """Cosine vs AS-Norm vs PLDA and raw vs calibrated scores of a model on a corpus."""
    setup_logging()
    started = time.perf_counter()
    if threads > 0:
        torch.set_num_threads(threads)
    root = resolve_data(data)
    with user_errors():
        try:
            net = load_exported(model)
            tr = read_trials(root / trials)
            train_ids = select_training_ids(root, split, per_speaker, seed)
        except (ModelFileError, TrialError, CorpusError) as exc:
            raise ValueError(str(exc)) from None
        if not tr.labeled:
            raise ValueError(f"{root / trials}: the trial list has no labels")
        sets: dict[str, EmbeddingSet] = {}
        for name, ids in (("veri", tr.utterances()), ("train", train_ids)):
            with progress_bar(f"embedding {name}", len(ids)) as advance:
                sets[name] = embed_ids(net, root, ids, num_workers=workers, progress=advance)
            e = sets[name]
            save_embeddings(out / "embeddings" / f"{name}.npz", e.ids, e.embeddings, e.durations)
        setup = {"model": str(model), "model id": net.model_id, "corpus": str(root),
                 "trial list": trials, "training utterances per speaker": per_speaker}  # fmt: skip
        res = backend_report(
            sets["veri"], tr, sets["train"], out, top_n=top_n, plda_dim=plda_dim,
            calibrate_system=system, n_per_class=calibration_trials, seed=seed, setup=setup,
        )  # fmt: skip
        for name, s in res.scores.items():
            path = out / "scores" / f"{name.replace(' ', '_')}.txt"
            write_score_file(path, tr.enroll, tr.test, s, tr.labels)
    res.report["setup"]["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write(out / "report.json", json.dumps(res.report, indent=2))
    if json_out:
        typer.echo(json.dumps(res.report, indent=2))
    else:
        console.print((out / "report.md").read_text())
        console.print(f"report written to {out / 'report.md'}")
