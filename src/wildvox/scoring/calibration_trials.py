"""Calibration trials and fitting a calibration from embeddings.

:func:`build_calibration_trials` draws IDLab's calibration set (VoxSRC-20, section 1.3):
short-short, short-long and long-long trials (short = 2-6 s), each with as many targets as
non-targets. :func:`fit_model_calibration` scores such trials of held-out speakers as the model
will score (cosine, or AS-Norm against its cohort) and fits the model's
:class:`~wildvox.scoring.calibration.Calibration`. :func:`cross_fold_llrs` measures a
calibration fairly on test speakers: fitted on one half of them, applied to the other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from wildvox.scoring.calibration import (
    SHORT_SECONDS,
    Calibration,
    LogisticCalibrator,
    trial_features,
)
from wildvox.scoring.cohort import ScoreCohort, score_name
from wildvox.scoring.cosine import cosine_score_pairs

logger = logging.getLogger(__name__)

__all__ = [
    "TRIAL_KINDS",
    "CalibrationTrials",
    "build_calibration_trials",
    "cross_fold_llrs",
    "cross_validated_rates",
    "fit_model_calibration",
    "speaker_folds",
]

TRIAL_KINDS = ("short-short", "short-long", "long-long")
_MAX_ROUNDS = 40
_ENUMERATE_LIMIT = 2_000_000


class CalibrationTrials(NamedTuple):
    """Trials as utterance indices: ``enroll`` (M,), ``test`` (M,), ``labels`` (M,) 1/0 and
    ``kind`` (M,) an index into :data:`TRIAL_KINDS`."""

    enroll: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    kind: np.ndarray


def _canon(a: np.ndarray, b: np.ndarray, same_class: bool) -> tuple[np.ndarray, np.ndarray]:
    return (np.minimum(a, b), np.maximum(a, b)) if same_class else (a, b)


def _all_pairs(
    a_idx: np.ndarray, b_idx: np.ndarray, spk: np.ndarray, target: bool, same_class: bool
) -> tuple[np.ndarray, np.ndarray]:
    a, b = (g.ravel() for g in np.meshgrid(a_idx, b_idx, indexing="ij"))
    ok = (spk[a] == spk[b]) if target else (spk[a] != spk[b])
    if same_class:
        ok &= a < b
    return a[ok], b[ok]


def _sample_pairs(
    a_idx: np.ndarray,
    b_idx: np.ndarray,
    spk: np.ndarray,
    target: bool,
    same_class: bool,
    need: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``need`` distinct (a, b) pairs, a from ``a_idx``, b from ``b_idx``, a != b.

    Small classes enumerate every valid pair and draw uniformly among them; large ones draw by
    rejection (targets: a speaker uniformly, then one utterance per side), so that no speaker
    with many utterances dominates the target trials.
    """
    if need <= 0 or a_idx.size == 0 or b_idx.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if a_idx.size * b_idx.size <= _ENUMERATE_LIMIT:
        a, b = _all_pairs(a_idx, b_idx, spk, target, same_class)
        pick = rng.permutation(a.size)[:need]
        return a[pick], b[pick]
    n = int(spk.size)
    keys = np.empty(0, np.int64)
    if target:  # speaker first, then an utterance on each side: speakers weigh equally
        spk_a, spk_b = spk[a_idx], spk[b_idx]
        both = np.intersect1d(spk_a, spk_b)
        if same_class:  # a speaker needs two utterances of this class
            ids, cnt = np.unique(spk_a, return_counts=True)
            both = ids[cnt >= 2]
        order_a, order_b = np.argsort(spk_a, kind="stable"), np.argsort(spk_b, kind="stable")
        sa, sb = spk_a[order_a], spk_b[order_b]
    for _ in range(_MAX_ROUNDS):
        m = max(256, 2 * (need - keys.size))
        if target:
            if both.size == 0:
                break
            s = rng.choice(both, m)
            lo_a, hi_a = np.searchsorted(sa, s, "left"), np.searchsorted(sa, s, "right")
            lo_b, hi_b = np.searchsorted(sb, s, "left"), np.searchsorted(sb, s, "right")
            a = a_idx[order_a[lo_a + (rng.random(m) * (hi_a - lo_a)).astype(np.int64)]]
            b = b_idx[order_b[lo_b + (rng.random(m) * (hi_b - lo_b)).astype(np.int64)]]
            ok = a != b
        else:
            a, b = rng.choice(a_idx, m), rng.choice(b_idx, m)
            ok = spk[a] != spk[b]
        a, b = _canon(a[ok], b[ok], same_class)
        keys = np.unique(np.concatenate([keys, a * n + b]))
        if keys.size >= need:
            break
    keys = rng.permutation(keys)[:need]
    return keys // n, keys % n


def build_calibration_trials(
    speakers: ArrayLike,
    durations: ArrayLike,
    rng: np.random.Generator,
    n_per_class: int = 10000,
    short: tuple[float, float] = SHORT_SECONDS,
) -> CalibrationTrials:
    """Duration-stratified calibration trials (IDLab VoxSRC-20, section 1.3).

    Utterances with ``short[0] <= duration < short[1]`` seconds are *short*, those with
    ``duration >= short[1]`` *long*, shorter ones are not used. Each of short-short, short-long
    and long-long gets up to ``n_per_class`` trials, half targets and half non-targets, no
    repeated pair and no utterance against itself. A class with too few possible target or
    non-target pairs gets fewer (balanced) trials, and an empty class none; both are logged.

    Args:
        speakers: (N,) speaker label of each utterance.
        durations: (N,) utterance durations in seconds.
        rng: random generator (seeded by the caller).
        n_per_class: trials per duration class.
        short: (lower, upper) bounds of a short utterance in seconds.
    """
    spk_raw = np.asarray(speakers)
    dur = np.asarray(durations, dtype=np.float64)
    if spk_raw.ndim != 1 or dur.shape != spk_raw.shape:
        raise ValueError(
            f"speakers and durations must be 1-D of one length, got {spk_raw.shape} and {dur.shape}"
        )
    if not np.isfinite(dur).all():
        raise ValueError(f"durations contain {int((~np.isfinite(dur)).sum())} NaN/inf value(s)")
    if not 0.0 <= short[0] < short[1]:
        raise ValueError(f"short must be (lower, upper) seconds with lower < upper, got {short}")
    if n_per_class < 2:
        raise ValueError(f"n_per_class must be >= 2, got {n_per_class}")
    _, spk = np.unique(spk_raw, return_inverse=True)
    spk = spk.ravel().astype(np.int64)
    groups = {
        "short": np.flatnonzero((dur >= short[0]) & (dur < short[1])),
        "long": np.flatnonzero(dur >= short[1]),
    }
    half = n_per_class // 2
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for k, kind in enumerate(TRIAL_KINDS):
        ga, gb = kind.split("-")
        same = ga == gb
        a_idx, b_idx = groups[ga], groups[gb]
        tar = _sample_pairs(a_idx, b_idx, spk, True, same, half, rng)
        non = _sample_pairs(a_idx, b_idx, spk, False, same, half, rng)
        n = min(tar[0].size, non[0].size)
        if n < half:
            logger.warning(
                "calibration trials %s: %d targets + %d non-targets (asked %d each)",
                kind,
                n,
                n,
                half,
            )
        parts.append(
            (
                np.concatenate([tar[0][:n], non[0][:n]]),
                np.concatenate([tar[1][:n], non[1][:n]]),
                np.repeat(np.array([1, 0], np.int8), n),
                np.full(2 * n, k, np.int8),
            )
        )
    enroll, test, labels, kind_arr = (np.concatenate(p) for p in zip(*parts, strict=True))
    if labels.size == 0:
        raise ValueError(
            "no calibration trials: no duration class has both a target and a non-target pair"
        )
    return CalibrationTrials(enroll, test, labels, kind_arr)


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
    nonnegative: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Calibrate trials by speaker folds: fit on trials outside fold k, apply inside it.

    A trial belongs to fold k when both sides' speakers are in fold k; its LLR comes from a
    calibrator fitted on the trials with neither side in fold k. Trials across folds are left
    out (NaN), as both calibrators saw one of their speakers.

    Args:
        features: (N, F) or (N,) calibration features.
        labels: (N,) 1 / 0.
        fold_enroll, fold_test: (N,) fold index of each side's speaker.
        nonnegative: as in :class:`~wildvox.scoring.calibration.LogisticCalibrator`.

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
            cal = LogisticCalibrator(p_target=p_target, nonnegative=nonnegative)
            cal.fit(f[outside], y[outside])
        except ValueError as exc:
            raise ValueError(f"cannot calibrate for fold {k}: {exc}") from exc
        llr[inside] = cal.transform(f[inside])
        fitted.append({"fold": k, "fit_trials": int(outside.sum()), **cal.to_dict()})
    return llr, np.isfinite(llr), fitted


def fit_model_calibration(
    embeddings: np.ndarray,
    durations: np.ndarray,
    speakers: Sequence[str],
    seed: int = 0,
    n_per_class: int = 10000,
    short: tuple[float, float] = SHORT_SECONDS,
    p_target: float = 0.05,
    cohort: ScoreCohort | None = None,
) -> Calibration:
    """Fit a model's calibration on embeddings (N, D) of held-out speakers' utterances with
    their durations (N,) in seconds, on cosine scores or, with a ``cohort``, on AS-normalised
    ones (as the model will score). Durations are clipped to the range seen here when the
    calibration is applied."""
    dur = np.asarray(durations, dtype=np.float64)
    rng = np.random.default_rng(seed)
    # every duration class of the paper, plus "very short" (< 2 s) inputs, which are most of
    # what wildvox users and wildmix have: they join the short class
    trials = build_calibration_trials(
        np.asarray(speakers), np.maximum(dur, short[0]), rng, n_per_class, short
    )
    enroll, test = embeddings[trials.enroll], embeddings[trials.test]
    if cohort is None:
        scores = cosine_score_pairs(enroll, test)
    else:
        scores = cohort.score_pairs(enroll, test)
    feats = trial_features(scores, ("duration",), dur_a=dur[trials.enroll], dur_b=dur[trials.test])
    return Calibration.fit(
        feats, trials.labels, quality=("duration",),
        score=score_name(cohort), p_target=p_target,
        fitted_on=f"{len(set(speakers))} held-out speakers, {len(dur)} utterances",
    )  # fmt: skip


#: Trials below which a calibration on a user's own trials is only a rough guide: a far=1%
#: threshold is placed among the top 1 % of non-target LLRs, so 1,000 non-targets leave 10
#: of them to place it; 50 targets bound the false-reject estimate to about +-7 points.
MIN_TARGETS, MIN_NONTARGETS = 50, 1000


def cross_validated_rates(
    features: np.ndarray,
    labels: np.ndarray,
    quality: Sequence[str] = ("duration",),
    points: Sequence[str] = ("eer", "far=1%", "far=0.1%"),
    folds: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """False-accept and false-reject rates that each operating point reaches on trials it was
    not fitted on: ``folds``-fold cross-validation of :meth:`Calibration.fit` over trials
    (stratified by label), the held-out LLRs of all folds pooled.

    Returns:
        ``{point: {"far": fraction, "frr": fraction}}``.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs both target and non-target trials")
    k = min(folds, int(y.sum()), int((~y).sum()))
    if k < 2:
        raise ValueError("cross-validation needs at least 2 target and 2 non-target trials")
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, dtype=np.int64)
    for cls in (True, False):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(idx.size) % k
    accepted = {p: np.zeros(y.size, dtype=bool) for p in points}
    for i in range(k):
        held = fold == i
        cal = Calibration.fit(f[~held], y[~held], quality=quality)
        test = f[held].copy()
        if "duration" in quality and cal.duration_range is not None:
            j = 1 + 2 * list(quality).index("duration")  # clip as Calibration.llr does
            test[:, j : j + 2] = np.clip(test[:, j : j + 2], *np.log(cal.duration_range))
        llr = cal.calibrator.transform(test)
        for p in points:
            accepted[p][held] = llr >= cal.threshold(p)
    return {
        p: {"far": float(a[~y].mean()), "frr": float((~a[y]).mean())} for p, a in accepted.items()
    }
