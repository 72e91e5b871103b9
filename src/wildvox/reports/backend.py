"""The scoring back-end on files and arrays, and the back-end report of a model on a corpus.

Steps (WeSpeaker style): embeddings -> cosine / PLDA scores -> AS-Norm -> (quality-aware)
calibration -> metrics, as array functions; the score-file wrappers and commands are in
:mod:`wildvox.cli.scoring`.

Cohort statistics leave an utterance's own speaker out of its cohort when speaker labels are
given (:func:`utterance_cohort_stats`): calibration trials drawn from training speakers would
otherwise score their own speaker mean among the "imposters", biasing AS-Norm and the
imposter-mean quality measure against the evaluation trials, whose speakers are not in the
cohort.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from wildvox.data.corpora.voxceleb import load_iden_split, speaker_of
from wildvox.data.trials import Trials
from wildvox.metrics.plots import plot_det
from wildvox.metrics.verification import (
    check_trials,
    compute_actual_dcf,
    compute_cllr,
    compute_min_cllr,
    verification_report,
)
from wildvox.report import render_sections
from wildvox.scoring.asnorm import asnorm_from_stats, cohort_stats, make_cohort
from wildvox.scoring.calibration import (
    TRIAL_KINDS,
    LogisticCalibrator,
    build_calibration_trials,
)
from wildvox.scoring.cosine import cosine_score_pairs, length_normalize
from wildvox.scoring.embeddings import EmbeddingSet
from wildvox.scoring.plda import PLDA
from wildvox.scoring.quality import duration_quality, symmetric_quality

logger = logging.getLogger(__name__)

Quality = Literal["duration", "imposter"]
QUALITY_MEASURES: tuple[Quality, ...] = ("duration", "imposter")
SHORT_SECONDS = (2.0, 6.0)  # IDLab's short utterance; shorter wildmix clips count as short


def speakers_of_ids(ids: Sequence[str]) -> np.ndarray:
    """Speaker label of each ``speaker/...`` utterance id, (N,) str; ``ValueError`` otherwise."""
    bad = [i for i in ids if "/" not in i]
    if bad:
        raise ValueError(f"{len(bad)} id(s) have no 'speaker/' prefix, e.g. {bad[:3]}")
    return np.asarray([speaker_of(i) for i in ids])


def utterance_cohort_stats(
    emb: ArrayLike,
    cohort: ArrayLike,
    top_n: int | None = 100,
    speakers: ArrayLike | None = None,
    cohort_speakers: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each embedding's ``top_n`` highest cosine scores against the cohort.

    Args:
        emb: (U, D) utterance embeddings.
        cohort: (C, D) cohort.
        top_n: cohort scores kept; None keeps all (S-norm).
        speakers: (U,) speaker of each utterance, with ``cohort_speakers`` (C,): cohort rows of
            an utterance's own speaker are left out of its statistics.

    Returns:
        ``(mean (U,), std (U,))`` float64.
    """
    if speakers is None or cohort_speakers is None:
        return cohort_stats(emb, cohort, top_n)
    e, c = np.asarray(emb), np.asarray(cohort)
    spk, c_spk = np.asarray(speakers), np.asarray(cohort_speakers)
    if spk.shape != (e.shape[0],) or c_spk.shape != (c.shape[0],):
        raise ValueError(f"speakers {spk.shape} / cohort_speakers {c_spk.shape} do not fit")
    mean, std = np.empty(e.shape[0]), np.empty(e.shape[0])
    overlap = np.isin(spk, c_spk)
    if (~overlap).any():
        mean[~overlap], std[~overlap] = cohort_stats(e[~overlap], c, top_n)
    for s in np.unique(spk[overlap]):
        rows = spk == s
        mean[rows], std[rows] = cohort_stats(e[rows], c[c_spk != s], top_n)
    return mean, std


def trial_cohort_stats(
    emb: EmbeddingSet,
    enroll_ids: Sequence[str],
    test_ids: Sequence[str],
    cohort: ArrayLike,
    top_n: int | None = 100,
    cohort_speakers: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cohort statistics of both sides of N trials, computed once per distinct utterance.

    ``asnorm_from_stats(scores, *trial_cohort_stats(...))`` is AS-Norm (S-norm for
    ``top_n=None``); the means are the imposter-mean quality measure.

    Args:
        emb: embeddings of every utterance the trials name (``KeyError`` listing missing ids).
        enroll_ids, test_ids: N trial ids.
        cohort: (C, D) cohort.
        top_n: as in :func:`~wildvox.scoring.asnorm.asnorm`.
        cohort_speakers: (C,) speaker of each cohort row; an utterance's own speaker (from its
            ``speaker/...`` id) is then left out of its cohort.

    Returns:
        ``(mean_enroll, std_enroll, mean_test, std_test)``, each (N,) float64.
    """
    if len(test_ids) != len(enroll_ids):
        raise ValueError(f"{len(enroll_ids)} enroll ids but {len(test_ids)} test ids")
    used = list(dict.fromkeys([*enroll_ids, *test_ids]))
    sub = emb.embeddings[emb.index(used)]
    spk = None if cohort_speakers is None else speakers_of_ids(used)
    mean, std = utterance_cohort_stats(sub, cohort, top_n, spk, cohort_speakers)
    pos = {u: i for i, u in enumerate(used)}
    e = np.fromiter((pos[u] for u in enroll_ids), np.int64, len(enroll_ids))
    t = np.fromiter((pos[u] for u in test_ids), np.int64, len(test_ids))
    return mean[e], std[e], mean[t], std[t]


def quality_features(
    measures: Sequence[str],
    *,
    dur_enroll: ArrayLike | None = None,
    dur_test: ArrayLike | None = None,
    imp_enroll: ArrayLike | None = None,
    imp_test: ArrayLike | None = None,
) -> np.ndarray:
    """Symmetric quality features of N trials, (N, 2 * len(measures)).

    ``"duration"``: log of the shorter and longer side in seconds (:func:`duration_quality`);
    ``"imposter"``: min and max over the sides of the mean top-N cohort cosine.
    """
    cols = []
    for m in measures:
        if m == "duration":
            if dur_enroll is None or dur_test is None:
                raise ValueError("the duration quality measure needs utterance durations")
            cols.append(duration_quality(dur_enroll, dur_test))
        elif m == "imposter":
            if imp_enroll is None or imp_test is None:
                raise ValueError("the imposter quality measure needs cohort statistics")
            cols.append(symmetric_quality(imp_enroll, imp_test))
        else:
            raise ValueError(f"unknown quality measure {m!r}; valid: {list(QUALITY_MEASURES)}")
    if not cols:
        raise ValueError("no quality measures given")
    return np.hstack(cols)


def llr_metrics(llr: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """EER, MinDCF, actual DCF (p_target 0.01, 0.05) and Cllr / min Cllr (bits) of LLRs (N,)."""
    s, y = check_trials(llr, labels, name="llrs")
    out = verification_report(s, y)
    for p in (0.01, 0.05):
        out[f"act_dcf_{p}"] = compute_actual_dcf(s, y, p_target=p)
    out["cllr"] = compute_cllr(s, y)
    out["min_cllr"] = compute_min_cllr(s, y)
    return out


def speaker_folds(speakers: Sequence[str], n_folds: int = 2, seed: int = 0) -> dict[str, int]:
    """Split distinct speakers at random into ``n_folds`` folds of (nearly) equal size."""
    uniq = sorted(set(speakers))
    if not 2 <= n_folds <= len(uniq):
        raise ValueError(f"need 2 <= n_folds <= {len(uniq)} speakers, got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    return {uniq[j]: i % n_folds for i, j in enumerate(order.tolist())}


def cross_fold_llrs(
    features: ArrayLike,
    labels: ArrayLike,
    fold_enroll: ArrayLike,
    fold_test: ArrayLike,
    p_target: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Calibrate trials by speaker folds: fit on trials outside fold k, apply inside it.

    A trial belongs to fold k when both sides' speakers are in fold k; its LLR comes from a
    calibrator fitted on the trials with neither side in fold k. Trials across folds are left
    out (NaN), as both calibrators saw one of their speakers.

    Args:
        features: (N, F) or (N,) calibration features.
        labels: (N,) 1 / 0.
        fold_enroll, fold_test: (N,) fold index of each side's speaker.

    Returns:
        ``(llr (N,), evaluated mask (N,), one calibrator dict per fold)``.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    fe, ft = np.asarray(fold_enroll), np.asarray(fold_test)
    if not (f.shape[0] == y.shape[0] == fe.shape[0] == ft.shape[0]):
        raise ValueError("features, labels and folds must describe the same trials")
    llr = np.full(y.shape[0], np.nan)
    fitted = []
    for k in np.unique(np.concatenate([fe, ft])).tolist():
        inside, outside = (fe == k) & (ft == k), (fe != k) & (ft != k)
        if not inside.any():
            continue
        try:
            cal = LogisticCalibrator(p_target=p_target).fit(f[outside], y[outside])
        except ValueError as exc:
            raise ValueError(f"cannot calibrate for fold {k}: {exc}") from exc
        llr[inside] = cal.transform(f[inside])
        fitted.append({"fold": k, "fit_trials": int(outside.sum()), **cal.to_dict()})
    return llr, np.isfinite(llr), fitted


def select_training_ids(
    root: Path, split_name: str = "iden_split.txt", per_speaker: int = 20, seed: int = 0
) -> list[str]:
    """Split-1 utterance ids of an identification list, at most ``per_speaker`` per speaker."""
    if per_speaker < 2:
        raise ValueError(f"per_speaker must be >= 2, got {per_speaker}")
    by_spk: dict[str, list[str]] = {}
    for u in load_iden_split(root, split_name):
        if u.split == 1:
            by_spk.setdefault(speaker_of(u.id), []).append(u.id)
    rng = np.random.default_rng(seed)
    picked = [i for s in sorted(by_spk) for i in rng.permutation(by_spk[s])[:per_speaker]]
    return sorted(str(i) for i in picked)


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
    v_mean, v_std = utterance_cohort_stats(
        veri.embeddings, cohort, top, speakers_of_ids(veri.ids), c_spk
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
    t_mean, t_std = utterance_cohort_stats(train.embeddings, cohort, top, tr_spk, c_spk)
    ca, cb = train.embeddings[ct.enroll], train.embeddings[ct.test]
    raw_cal = _scores(calibrate_system, ca, cb, plda)
    if calibrate_system == "asnorm":
        raw_cal = asnorm_from_stats(
            raw_cal, t_mean[ct.enroll], t_std[ct.enroll], t_mean[ct.test], t_std[ct.test]
        )
    q_cal = quality_features(
        QUALITY_MEASURES, dur_enroll=dur[ct.enroll], dur_test=dur[ct.test],
        imp_enroll=t_mean[ct.enroll], imp_test=t_mean[ct.test],
    )  # fmt: skip
    vdur = veri.durations.astype(np.float64)
    q_ver = quality_features(
        QUALITY_MEASURES, dur_enroll=vdur[e_rows], dur_test=vdur[t_rows],
        imp_enroll=v_mean[e_rows], imp_test=v_mean[t_rows],
    )  # fmt: skip
    raw = systems[calibrate_system]
    f_cal, f_ver = np.column_stack([raw_cal, q_cal]), np.column_stack([raw, q_ver])
    cal = LogisticCalibrator(p_target=p_target).fit(raw_cal, ct.labels)
    qcal = LogisticCalibrator(p_target=p_target).fit(f_cal, ct.labels)
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
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
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
    (out_dir / "report.md").write_text(render_sections("Scoring back-end report", shown))
