"""``wildvox calibrate-model`` and ``wildvox export-onnx``: making a trained model shippable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from wildvox.api import load_model
from wildvox.audio.io import AudioError
from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.config import ConfigError, load_config
from wildvox.data.corpora.voxceleb import CorpusError, cap_per_speaker, load_corpus
from wildvox.data.manifest import Utterance
from wildvox.data.trials import TrialError, read_trials
from wildvox.inference.extract import Extraction, extract_embeddings
from wildvox.inference.model_io import (
    ExportedModel,
    ModelFileError,
    load_exported,
    update_model_extra,
)
from wildvox.inference.onnx_runtime import OnnxExportError, export_embedder
from wildvox.scoring.asnorm import make_cohort
from wildvox.scoring.calibration import Calibration, trial_features
from wildvox.scoring.calibration_trials import (
    MIN_NONTARGETS,
    MIN_TARGETS,
    cross_validated_rates,
    fit_model_calibration,
)
from wildvox.scoring.cohort import COHORT_FILE, ScoreCohort, score_name


def _embed(exported: ExportedModel, utts: list[Utterance], what: str) -> Extraction:
    with progress_bar(f"embedding {what}", len(utts)) as advance:
        return extract_embeddings(
            exported.net, [str(u.path) for u in utts], exported.config, on_error="skip",
            progress=advance,
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
    trials: Path | None = typer.Option(
        None,
        help="Labeled trials of your own recordings ('1|0 a.wav b.wav' lines; paths absolute "
        "or relative to the file's folder): refit the calibration for your domain.",
    ),
    seed: int = typer.Option(0),
) -> None:
    """Fit the model's score normalisation (an AS-Norm cohort of its training speakers) and its
    calibration and operating points on held-out speakers; or, with --trials, refit the
    calibration and operating points on your own labeled trials (the model's scoring kept)."""
    setup_logging()
    if trials is not None:
        _calibrate_on_trials(model, trials, seed)
        return
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
    cohort = None
    if train:
        members = cap_per_speaker(train, [u.speaker for u in train], cohort_per_speaker, seed)
        ext = _embed(exported, members, "cohort")
        means = make_cohort(ext.embeddings, np.array([members[i].speaker for i in ext.ok]))
        cohort = ScoreCohort.from_embeddings(means, top_n)
        console.print(f"AS-Norm cohort: {len(means)} training speakers, top {cohort.top_n}")
    chosen = cap_per_speaker(utts, [u.speaker for u in utts], per_speaker, seed)
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
    console.print(f"wrote {path}; load_model() now runs the embedder in ONNX Runtime")


def _resolve(item: str, folder: Path) -> Path:
    """A trial's path: absolute, else beside the trial file, else under its ``wav/``."""
    for p in (Path(item), folder / item, folder / "wav" / item):
        if p.is_file():
            return p
    raise ValueError(f"{item}: no such file (looked beside the trial list and in its wav/)")


def _calibrate_on_trials(model_dir: Path, trials_path: Path, seed: int) -> None:
    """``calibrate-model --trials``: embed the trials' recordings with the model, score them
    as the model scores, fit the calibration, report cross-validated FA/FR, save it."""
    try:
        tr = read_trials(trials_path)
        if not tr.labeled:
            raise ValueError(f"{trials_path}: the trials need labels ('1 a.wav b.wav')")
        n_tar = int(tr.labels.sum())
        if n_tar == 0 or n_tar == len(tr):
            raise ValueError(
                f"{trials_path}: {len(tr)} trials, all {'targets' if n_tar else 'non-targets'}; "
                "calibration needs both same-speaker and different-speaker pairs"
            )
        files = {u: _resolve(u, trials_path.parent) for u in tr.utterances()}
        m = load_model(model_dir, backend="auto")
    except (TrialError, ValueError, ModelFileError) as exc:
        fail(str(exc))
    emb, dur = {}, {}
    with progress_bar("embedding your recordings", len(files)) as advance:
        for u, p in files.items():
            try:
                e = m.analyse(p, speech=False)
            except (AudioError, ValueError) as exc:
                fail(str(exc))
            emb[u], dur[u] = e.embedding, e.duration
            advance(1)
    a = np.stack([emb[u] for u in tr.enroll])
    b = np.stack([emb[u] for u in tr.test])
    scores = m.score(a, b)
    feats = trial_features(scores, ("duration",), dur_a=[dur[u] for u in tr.enroll],
                           dur_b=[dur[u] for u in tr.test])  # fmt: skip
    rates = cross_validated_rates(feats, tr.labels, seed=seed)
    cal = Calibration.fit(feats, tr.labels, score=score_name(m.cohort),
                          fitted_on=f"{trials_path} ({len(tr)} trials)")  # fmt: skip
    update_model_extra(model_dir, "calibration", cal.to_dict())
    n_non = len(tr) - n_tar
    console.print(
        f"calibration fitted on {len(tr)} trials ({n_tar} targets, {n_non} non-targets) of "
        f"{trials_path}; thresholds (LLR): "
        f"{', '.join(f'{k} {v:.2f}' for k, v in cal.thresholds.items())}"
    )
    for point, r in rates.items():
        console.print(
            f"  {point}: reaches {100 * r['far']:.2f} % false accepts, "
            f"{100 * r['frr']:.2f} % false rejects (5-fold cross-validation)"
        )
    if n_tar < MIN_TARGETS or n_non < MIN_NONTARGETS:
        console.print(
            f"[yellow]warning:[/] fewer than {MIN_TARGETS} targets or {MIN_NONTARGETS} "
            "non-targets: the far=1% threshold is a rough guess; add trials (far=0.1% needs "
            "about 10x as many non-targets)"
        )
