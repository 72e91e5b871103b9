"""Exact speaker-verification metrics: EER, MinDCF, actual DCF, Cllr, min Cllr, DET curve.

Every metric is exact and O(n log n). Tied scores are handled exactly: all trials with the same
score are accepted or rejected together, so a metric never depends on the order of tied trials.
The operating points are the thresholds ``t`` in the set of distinct scores plus ``+inf``; a
trial is accepted ("same speaker") when ``score >= t``.

EER and MinDCF sort the target and the non-target scores separately (value sorts, several
times faster than an arg-sort) and read error counts with binary searches; the DET curve,
min Cllr and :func:`operating_points` group a single arg-sort of all scores.

The EER is where the piecewise-linear DET/ROC curve through these operating points crosses
``P_miss == P_fa`` (the same curve ``sklearn.metrics.roc_curve`` draws). The DCFs are normalised
as in the NIST SRE plans: divided by ``min(c_miss * p_target, c_fa * (1 - p_target))``.

>>> import numpy as np
>>> scores = np.array([0.1, 0.4, 0.35, 0.8])
>>> labels = np.array([0, 0, 1, 1])
>>> eer, thr = compute_eer(scores, labels)
>>> round(eer, 4), round(thr, 4)
(0.5, 0.4)
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger(__name__)

__all__ = [
    "compute_actual_dcf",
    "compute_cllr",
    "compute_eer",
    "compute_min_cllr",
    "compute_min_dcf",
    "det_curve",
    "operating_points",
    "sort_trials",
    "verification_report",
]


class OperatingPoints(NamedTuple):
    """Error rates at every distinct threshold, thresholds ascending (``+inf`` last).

    ``p_miss`` rises from 0 to 1 and ``p_fa`` falls from 1 to 0, all of shape (U + 1,) for U
    distinct scores.
    """

    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray


def check_trials(
    scores: ArrayLike, labels: ArrayLike, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a trial set and return ``(scores float64 (N,), labels bool (N,))``.

    Raises ``ValueError`` for arrays that are not 1-D or differ in length, for NaN or infinite
    scores (naming how many), for labels outside {0, 1}, and when one class is missing.
    """
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"{name} and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"{name} has {s.shape[0]} trials but labels has {y.shape[0]}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    n_nan = int(np.count_nonzero(np.isnan(s)))
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s) out of {s.size}")
    n_inf = int(np.count_nonzero(np.isinf(s)))
    if n_inf:
        raise ValueError(f"{name} contains {n_inf} infinite value(s) out of {s.size}")
    if y.dtype == np.bool_:
        yb = y
    else:
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"labels must be 0/1 numbers or booleans, got dtype {y.dtype}")
        bad = ~((y == 0) | (y == 1))
        if np.any(bad):
            examples = np.unique(y[bad])[:5].tolist()
            raise ValueError(
                f"labels must be 0 (non-target) or 1 (target); found {int(bad.sum())} other "
                f"value(s), e.g. {examples}"
            )
        yb = y == 1
    n_tar = int(np.count_nonzero(yb))
    if n_tar == 0 or n_tar == yb.size:
        kind = "non-target" if n_tar == 0 else "target"
        raise ValueError(
            f"both target and non-target trials are needed; all {yb.size} trials are {kind}"
        )
    return s, yb


def _grouped_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores ascending (U,), targets (U,) and non-targets (U,) per distinct score."""
    order = np.argsort(s)
    ss = s[order]
    ys = y[order]
    starts = np.flatnonzero(np.concatenate(([True], ss[1:] != ss[:-1])))
    uniq = ss[starts]
    tar_cum = np.concatenate(([0], np.cumsum(ys, dtype=np.int64)))
    ends = np.append(starts[1:], ss.size)
    n_tar = tar_cum[ends] - tar_cum[starts]
    n_non = (ends - starts) - n_tar
    return uniq, n_tar, n_non


def _points_from_counts(uniq: np.ndarray, n_tar: np.ndarray, n_non: np.ndarray) -> OperatingPoints:
    tot_tar = int(n_tar.sum())
    tot_non = int(n_non.sum())
    # Threshold k accepts scores >= thresholds[k]: misses are targets strictly below it.
    miss = np.concatenate(([0], np.cumsum(n_tar)))
    fa = tot_non - np.concatenate(([0], np.cumsum(n_non)))
    thresholds = np.append(uniq, np.inf)
    return OperatingPoints(thresholds, miss / tot_tar, fa / tot_non)


def operating_points(scores: ArrayLike, labels: ArrayLike) -> OperatingPoints:
    """Miss and false-alarm rates at every distinct threshold (one sort, ties grouped).

    Args:
        scores: (N,) trial scores, higher means more likely the same speaker.
        labels: (N,) 1 for target, 0 for non-target trials.
    """
    s, y = check_trials(scores, labels)
    return _points_from_counts(*_grouped_counts(s, y))


class SortedTrials(NamedTuple):
    """Target scores (T,) and non-target scores (M,), each sorted ascending."""

    tar: np.ndarray
    non: np.ndarray

    def rates(self, t: float) -> tuple[float, float]:
        """``(P_miss, P_fa)`` when accepting ``score >= t``."""
        n_miss = int(np.searchsorted(self.tar, t, side="left"))
        n_fa = self.non.size - int(np.searchsorted(self.non, t, side="left"))
        return n_miss / self.tar.size, n_fa / self.non.size


def sort_trials(scores: ArrayLike, labels: ArrayLike) -> SortedTrials:
    """Validate and split the scores by class, each part sorted (two value sorts, no argsort)."""
    s, y = check_trials(scores, labels)
    return SortedTrials(np.sort(s[y]), np.sort(s[~y]))


def _first_at_or_above_zero(arr: np.ndarray, st: SortedTrials) -> int:
    """Smallest index j with P_miss(arr[j]) >= P_fa(arr[j]) (len(arr) if none); arr sorted."""
    lo, hi = 0, arr.size
    while lo < hi:  # P_miss - P_fa is non-decreasing in the threshold
        mid = (lo + hi) // 2
        miss, fa = st.rates(float(arr[mid]))
        if miss - fa >= 0.0:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _eer(st: SortedTrials) -> tuple[float, float]:
    # Operating points are the distinct scores of both classes plus +inf. Find the first one
    # with P_miss >= P_fa (t1) and the one before it (t0) by binary search in each class,
    # without materialising the merged curve; the lowest score has P_miss 0 < P_fa 1, so t0
    # always exists.
    above = [a[j] for a in st if (j := _first_at_or_above_zero(a, st)) < a.size]
    t1 = float(min(above)) if above else math.inf
    below = [a[k - 1] for a in st if (k := int(np.searchsorted(a, t1, side="left"))) > 0]
    t0 = float(max(below))
    miss0, fa0 = st.rates(t0)
    miss1, fa1 = st.rates(t1) if math.isfinite(t1) else (1.0, 0.0)
    d0, d1 = miss0 - fa0, miss1 - fa1
    alpha = -d0 / (d1 - d0)
    eer = fa0 + alpha * (fa1 - fa0)
    thr = t0 + alpha * (t1 - t0) if math.isfinite(t1) else float(np.nextafter(t0, np.inf))
    return float(eer), float(thr)


def compute_eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold.

    Args:
        scores: (N,) trial scores.
        labels: (N,) 1 target / 0 non-target.

    Returns:
        ``(eer, threshold)``: EER as a fraction in [0, 1], where the linear interpolation of the
        ROC between consecutive operating points crosses ``P_miss == P_fa``; the threshold is
        interpolated between the two operating points' thresholds in the same proportion.
    """
    return _eer(sort_trials(scores, labels))


def _check_costs(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0.0 or c_fa <= 0.0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")


class _TargetPoints(NamedTuple):
    """Operating points at each distinct target score, then +inf (the MinDCF candidates)."""

    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray


def _target_points(st: SortedTrials) -> _TargetPoints:
    # Between two distinct target scores P_miss is constant and P_fa falls as the threshold
    # rises, so every DCF minimum is reached at a distinct target score or at +inf.
    tar, non = st
    starts = np.flatnonzero(np.concatenate(([True], tar[1:] != tar[:-1])))
    thr = tar[starts]
    n_fa = non.size - np.searchsorted(non, thr, side="left")
    return _TargetPoints(
        np.append(thr, np.inf),
        np.append(starts / tar.size, 1.0),
        np.append(n_fa / non.size, 0.0),
    )


def _min_dcf(p: _TargetPoints, p_target: float, c_miss: float, c_fa: float) -> tuple[float, float]:
    _check_costs(p_target, c_miss, c_fa)
    dcf = c_miss * p_target * p.p_miss + c_fa * (1.0 - p_target) * p.p_fa
    k = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[k] / norm), float(p.thresholds[k])


def compute_min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Minimum normalised detection cost over all thresholds, and the threshold reaching it.

    ``DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t)``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))`` (NIST SRE normalisation, so a system that
    always accepts or always rejects scores at most 1). The threshold returned is the lowest
    distinct target score reaching the minimum, or ``+inf`` when rejecting every trial is
    optimal.
    """
    return _min_dcf(_target_points(sort_trials(scores, labels)), p_target, c_miss, c_fa)


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """LLR threshold of the Bayes decision: ``log(c_fa * (1 - p) / (c_miss * p))``."""
    _check_costs(p_target, c_miss, c_fa)
    return math.log(c_fa * (1.0 - p_target) / (c_miss * p_target))


def compute_actual_dcf(
    llrs: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Normalised DCF of Bayes decisions on calibrated LLRs (natural log).

    A trial is accepted when ``llr >= log(c_fa * (1 - p) / (c_miss * p))``; normalised like
    :func:`compute_min_dcf`, so ``actual - min`` measures the calibration loss.
    """
    s, y = check_trials(llrs, labels, name="llrs")
    thr = bayes_threshold(p_target, c_miss, c_fa)
    p_miss = np.count_nonzero(s[y] < thr) / np.count_nonzero(y)
    p_fa = np.count_nonzero(s[~y] >= thr) / np.count_nonzero(~y)
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return float(dcf / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def _cllr_terms(llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial costs in bits: targets ``log2(1 + e^-llr)``, non-targets ``log2(1 + e^llr)``."""
    return np.logaddexp(0.0, -llr) / math.log(2.0), np.logaddexp(0.0, llr) / math.log(2.0)


def compute_cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits (Brümmer & du Preez 2006).

    ``Cllr = 0.5 * (mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr))`` with natural-log
    LLRs; 1 bit for a system that always outputs 0, 0 for a perfect one.
    """
    s, y = check_trials(llrs, labels, name="llrs")
    c_tar, _ = _cllr_terms(s[y])
    _, c_non = _cllr_terms(s[~y])
    return float(0.5 * (c_tar.mean() + c_non.mean()))


def _pav(ratio: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted pool-adjacent-violators: the non-decreasing fit to ``ratio`` (U,)."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for r, w in zip(ratio.tolist(), weight.tolist(), strict=True):
        m, wt, n = r, w, 1
        while means and means[-1] >= m:
            pm, pw, pn = means.pop(), weights.pop(), sizes.pop()
            m = (pm * pw + m * wt) / (pw + wt)
            wt += pw
            n += pn
        means.append(m)
        weights.append(wt)
        sizes.append(n)
    return np.repeat(np.asarray(means), np.asarray(sizes, dtype=np.int64))


def _pav_llr(n_tar: np.ndarray, n_non: np.ndarray) -> np.ndarray:
    total = n_tar + n_non
    post = _pav(n_tar / total, total.astype(np.float64))
    prior_logit = math.log(n_tar.sum() / n_non.sum())
    with np.errstate(divide="ignore"):
        return np.log(post) - np.log1p(-post) - prior_logit


def compute_min_cllr(scores: ArrayLike, labels: ArrayLike) -> float:
    """Cllr after the optimal monotone calibration of ``scores`` (PAV), in bits.

    Tied scores form one PAV block, so the result does not depend on their order.
    """
    s, y = check_trials(scores, labels)
    _, n_tar, n_non = _grouped_counts(s, y)
    llr = _pav_llr(n_tar, n_non)
    c_tar, c_non = _cllr_terms(llr)
    # Blocks with no targets have llr = -inf: their target cost is inf * 0, so mask by count.
    tar_cost = np.sum(np.where(n_tar > 0, c_tar, 0.0) * n_tar) / n_tar.sum()
    non_cost = np.sum(np.where(n_non > 0, c_non, 0.0) * n_non) / n_non.sum()
    return float(0.5 * (tar_cost + non_cost))


def det_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET curve: ``(fpr, fnr, thresholds)``, each (U + 1,), thresholds ascending.

    ``fpr[k]`` and ``fnr[k]`` are the false-alarm and miss rates when accepting
    ``score >= thresholds[k]``; the last threshold is ``+inf`` (reject everything).
    """
    p = operating_points(scores, labels)
    return p.p_fa, p.p_miss, p.thresholds


def verification_report(scores: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """EER and MinDCF at p_target 0.01 and 0.05 (c_miss = c_fa = 1), sorting once.

    Returns:
        ``{"eer": ..., "min_dcf_0.01": ..., "min_dcf_0.05": ...}``, EER as a fraction.
    """
    st = sort_trials(scores, labels)
    eer, _ = _eer(st)
    points = _target_points(st)
    return {
        "eer": eer,
        "min_dcf_0.01": _min_dcf(points, 0.01, 1.0, 1.0)[0],
        "min_dcf_0.05": _min_dcf(points, 0.05, 1.0, 1.0)[0],
    }


def llr_metrics(llr: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """EER, MinDCF, actual DCF (p_target 0.01, 0.05) and Cllr / min Cllr (bits) of LLRs (N,)."""
    s, y = check_trials(llr, labels, name="llrs")
    out = verification_report(s, y)
    for p in (0.01, 0.05):
        out[f"act_dcf_{p}"] = compute_actual_dcf(s, y, p_target=p)
    out["cllr"] = compute_cllr(s, y)
    out["min_cllr"] = compute_min_cllr(s, y)
    return out
