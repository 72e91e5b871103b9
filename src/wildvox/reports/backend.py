"""The scoring back-end on files and arrays, and the back-end report of a model on a corpus.

Steps (WeSpeaker style): embeddings -> cosine / PLDA scores -> AS-Norm -> (quality-aware)
calibration -> metrics, as array functions; the score-file wrappers and commands are in
:mod:`wildvox.cli.scoring`.

The array steps live in :mod:`wildvox.scoring` (AS-Norm with own-speaker exclusion, the
calibrator, its features and cross-fold fitting) and :mod:`wildvox.metrics`; this module runs
them on a model's embeddings and writes the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wildvox.data.corpora.voxceleb import speakers_of_ids
from wildvox.data.files import atomic_write
from wildvox.data.trials import Trials
from wildvox.metrics.plots import plot_det
from wildvox.metrics.verification import llr_metrics, verification_report
from wildvox.reports.render import render_sections
from wildvox.scoring.asnorm import asnorm_from_stats, cohort_stats, make_cohort
from wildvox.scoring.calibration import (
    QUALITY_MEASURES,
    SHORT_SECONDS,
    LogisticCalibrator,
    trial_features,
)
from wildvox.scoring.calibration_trials import (
    TRIAL_KINDS,
    build_calibration_trials,
    cross_fold_llrs,
    speaker_folds,
)
from wildvox.scoring.cosine import cosine_score_pairs, length_normalize
from wildvox.scoring.embeddings import EmbeddingSet
from wildvox.scoring.plda import PLDA

logger = logging.getLogger(__name__)


def _scores(system: str, a: np.ndarray, b: np.ndarray, plda: PLDA) -> np.ndarray:
    if system == "plda":
        return plda.score(length_normalize(a), length_normalize(b))
    return cosine_score_pairs(a, b)


@dataclass
class BackendResult:
    """The report dict (as in ``report.json``) and the test-trial scores of each system and
    calibrated variant, name -> (N,) in trial order."""

    report: dict[str, Any]
    scores: dict[str, np.ndarray]


def backend_report(
    veri: EmbeddingSet,
    trials: Trials,
    train: EmbeddingSet,
    out_dir: Path,
    *,
    top_n: int = 100,
    plda_dim: int = 128,
    calibrate_system: Literal["cosine", "asnorm", "plda"] = "asnorm",
    n_per_class: int = 10000,
    p_target: float = 0.05,
    seed: int = 0,
    setup: dict[str, Any] | None = None,
) -> BackendResult:
    """Cosine vs AS-Norm vs PLDA, and raw vs calibrated vs quality-aware calibrated scores.

    The training embeddings (ids ``speaker/...``, with durations) give the AS-Norm cohort
    (per-speaker means), the PLDA model and IDLab's calibration trials (short-short,
    short-long, long-long; short = 2-6 s, clips under 2 s counted as short). Calibration is
    also measured fairly with :func:`cross_fold_llrs` over two folds of the test speakers.
    Writes ``report.json``, ``report.md`` and ``det.png`` to ``out_dir``.

    Args:
        veri: embeddings (with durations) of every utterance of ``trials``.
        trials: labeled trial list.
        train: training embeddings with durations.
        out_dir: output folder.
        top_n: AS-Norm cohort size; plda_dim: LDA dimension (capped by D and speakers - 1).
        calibrate_system: the scores the calibrators map to LLRs.
        n_per_class: calibration trials per duration class.
        setup: extra entries for the report's setup section (model, corpus, ...).

    Returns:
        The report and the scores (cosine, asnorm, plda, and the calibrated LLRs).
    """
    if not trials.labeled:
        raise ValueError("the trial list has no labels")
    if veri.durations is None or train.durations is None:
        raise ValueError("embeddings need durations for quality-aware calibration")
    if calibrate_system not in ("cosine", "asnorm", "plda"):
        raise ValueError(f"calibrate_system must be cosine, asnorm or plda: {calibrate_system!r}")
    labels = trials.labels
    tr_spk = speakers_of_ids(train.ids)
    c_spk = np.unique(tr_spk)
    cohort = make_cohort(train.embeddings, tr_spk, per="speaker")
    top = min(top_n, len(c_spk) - 1)  # one speaker is left out of training utterances' cohort
    if top < top_n:
        logger.warning("AS-Norm top_n %d capped at %d (cohort of %d)", top_n, top, len(c_spk))
    plda = PLDA().fit(
        length_normalize(train.embeddings), tr_spk, lda_dim=min(plda_dim, train.dim, len(c_spk) - 1)
    )
    e_rows, t_rows = veri.index(trials.enroll), veri.index(trials.test)
    ve, vt = veri.embeddings[e_rows], veri.embeddings[t_rows]
    v_mean, v_std = cohort_stats(
        veri.embeddings, cohort, top, speakers=speakers_of_ids(veri.ids), cohort_speakers=c_spk
    )
    systems = {"cosine": cosine_score_pairs(ve, vt), "plda": _scores("plda", ve, vt, plda)}
    systems["asnorm"] = asnorm_from_stats(
        systems["cosine"], v_mean[e_rows], v_std[e_rows], v_mean[t_rows], v_std[t_rows]
    )
    # calibration trials on training speakers (own speaker left out of each cohort)
    rng = np.random.default_rng(seed)
    dur = train.durations.astype(np.float64)
    ct = build_calibration_trials(
        tr_spk, np.maximum(dur, SHORT_SECONDS[0]), rng, n_per_class, SHORT_SECONDS
    )
    t_mean, t_std = cohort_stats(
        train.embeddings, cohort, top, speakers=tr_spk, cohort_speakers=c_spk
    )
    ca, cb = train.embeddings[ct.enroll], train.embeddings[ct.test]
    raw_cal = _scores(calibrate_system, ca, cb, plda)
    if calibrate_system == "asnorm":
        raw_cal = asnorm_from_stats(
            raw_cal, t_mean[ct.enroll], t_std[ct.enroll], t_mean[ct.test], t_std[ct.test]
        )
    f_cal = trial_features(
        raw_cal, QUALITY_MEASURES, dur_a=dur[ct.enroll], dur_b=dur[ct.test],
        imp_a=t_mean[ct.enroll], imp_b=t_mean[ct.test],
    )  # fmt: skip
    vdur = veri.durations.astype(np.float64)
    raw = systems[calibrate_system]
    f_ver = trial_features(
        raw, QUALITY_MEASURES, dur_a=vdur[e_rows], dur_b=vdur[t_rows],
        imp_a=v_mean[e_rows], imp_b=v_mean[t_rows],
    )  # fmt: skip
    cal = LogisticCalibrator(p_target=p_target).fit(raw_cal, ct.labels)
    qcal = LogisticCalibrator(p_target=p_target).fit(f_cal, ct.labels)  # IDLab's, unconstrained
    llrs = {"raw": raw, "calibrated": cal.transform(raw), "quality-aware": qcal.transform(f_ver)}
    # fair variant: 2-fold by test speaker
    v_spk_e, v_spk_t = speakers_of_ids(trials.enroll), speakers_of_ids(trials.test)
    folds = speaker_folds([*v_spk_e.tolist(), *v_spk_t.tolist()], 2, seed)
    fe = np.array([folds[s] for s in v_spk_e])
    ft = np.array([folds[s] for s in v_spk_t])
    fold_cal, mask, fits_c = cross_fold_llrs(raw, labels, fe, ft, p_target)
    fold_q, _, fits_q = cross_fold_llrs(f_ver, labels, fe, ft, p_target)
    held = {f"{k} (train speakers)": v[mask] for k, v in llrs.items()}
    held.update({"calibrated (2-fold)": fold_cal[mask], "quality-aware (2-fold)": fold_q[mask]})
    n_kind = np.bincount(ct.kind, minlength=len(TRIAL_KINDS))
    report: dict[str, Any] = {
        "setup": {
            **(setup or {}),
            "trials": len(trials),
            "targets": int((labels == 1).sum()),
            "test speakers": len(folds),
            "training utterances": len(train),
            "training speakers": len(c_spk),
            "cohort": f"{len(c_spk)} speaker means, top {top}",
            "plda dims": int(plda.psi.shape[0]) if plda.psi is not None else 0,
            "calibrated system": calibrate_system,
            "calibration trials": {k: int(n) for k, n in zip(TRIAL_KINDS, n_kind, strict=True)},
            "quality measures": "log duration min/max, imposter mean (cosine, top-N) min/max",
            "2-fold trials evaluated": f"{int(mask.sum())} of {len(trials)}",
            "seed": seed,
        },
        "notes": _NOTES,
        "systems": {k: verification_report(v, labels) for k, v in systems.items()},
        "calibration on training speakers": {k: llr_metrics(v, labels) for k, v in llrs.items()},
        "calibration, 2-fold by test speaker": {
            k: llr_metrics(v, labels[mask]) for k, v in held.items()
        },
        "calibrators": {
            "train": cal.to_dict(),
            "train quality-aware": qcal.to_dict(),
            "2-fold": fits_c,
            "2-fold quality-aware": fits_q,
        },
    }
    scores = {**systems, **{f"{calibrate_system} {k} llr": llrs[k] for k in llrs if k != "raw"}}
    _write(out_dir, report, {k: (v, labels) for k, v in scores.items()})
    return BackendResult(report, scores)


_NOTES = (
    "Calibration on training speakers is optimistic for a model trained on them: their "
    "embeddings are tighter than those of unseen speakers, so a calibrator fitted there is "
    "over-confident on the test speakers. The 2-fold rows fit on the test trials whose both "
    "speakers are in one half of the test speakers and evaluate on the other half (and vice "
    "versa); trials across the halves are not evaluated, and every row of that table uses the "
    "same trials. wildmix clips are mostly under 2 s: they count as short (IDLab's short is "
    "2-6 s). Durations are file durations (capped at the model's max_seconds), not VAD speech. "
    "EER in %; DCFs normalised; Cllr in bits; raw scores are read as LLRs as they are."
)


def _write(
    out_dir: Path, report: dict[str, Any], curves: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_det(curves, out_dir / "det.png", title="Back-ends on the test trials")
    atomic_write(out_dir / "report.json", json.dumps(report, indent=2))
    shown = {k: v for k, v in report.items() if k != "calibrators"}
    shown["setup"] = {k: str(v) for k, v in report["setup"].items()}
    for key in (
        "systems",
        "calibration on training speakers",
        "calibration, 2-fold by test speaker",
    ):
        shown[key] = {
            n: {"EER %": 100 * m["eer"], **{k: v for k, v in m.items() if k != "eer"}}
            for n, m in report[key].items()
        }
    shown["DET curves"] = "![DET curves](det.png) (calibrated LLRs: a monotone map of their system)"
    atomic_write(out_dir / "report.md", render_sections("Scoring back-end report", shown))
