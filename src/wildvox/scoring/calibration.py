"""Score calibration: prior-weighted logistic regression and duration-balanced calibration trials.

:class:`LogisticCalibrator` maps per-trial features ``f = [score, quality measures ...]`` to a
natural-log LLR ``w . f + b``. It minimises the prior-weighted cross-entropy of BOSARIS'
``train_linear_calibration`` (Brümmer & van Leeuwen), as used by IDLab's quality-aware
calibration (Thienpondt et al., VoxSRC-20)::

    J(w, b) = p / N_tar * sum_tar log(1 + exp(-(w . f + b + logit p)))
            + (1 - p) / N_non * sum_non log(1 + exp(w . f + b + logit p))

solved with scipy's L-BFGS on standardised features, with the analytic gradient.

:func:`build_calibration_trials` draws the IDLab calibration set: short-short, short-long and
long-long trials (short = 2-6 s), each with as many targets as non-targets.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import expit

from wildvox.metrics.verification import check_trials
from wildvox.scoring.plda import NotFittedError

logger = logging.getLogger(__name__)

__all__ = [
    "TRIAL_KINDS",
    "CalibrationTrials",
    "LogisticCalibrator",
    "build_calibration_trials",
    "fit_weighted_logistic",
]


def _features(x: ArrayLike, n_features: int | None = None) -> np.ndarray:
    f = np.asarray(x, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"features must be (N,) or (N, F), got shape {np.shape(x)}")
    if n_features is not None and f.shape[1] != n_features:
        raise ValueError(f"expected {n_features} feature column(s), got {f.shape[1]}")
    bad = ~np.isfinite(f)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise ValueError(f"features contain NaN/inf in {rows} trial(s) out of {f.shape[0]}")
    return f


def fit_weighted_logistic(
    features: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.05,
    l2: float = 0.0,
    max_iter: int = 1000,
) -> tuple[np.ndarray, float]:
    """Minimise the prior-weighted logistic objective (module docstring).

    Args:
        features: (N, F) or (N,) trial features.
        labels: (N,) 1 target / 0 non-target.
        p_target: effective target prior of the objective, in (0, 1).
        l2: ridge penalty ``0.5 * l2 * |w|^2`` on the standardised weights (0: none).
        max_iter: L-BFGS iterations.

    Returns:
        ``(weights (F,), bias)`` with ``llr = features @ weights + bias``.
    """
    f = _features(features)
    _, y = check_trials(f[:, 0], labels, name="features")
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    mean = f.mean(axis=0)
    scale = f.std(axis=0)
    const = scale <= 1e-12 * np.maximum(1.0, np.abs(mean))
    if const.any():
        logger.warning("calibration feature(s) %s are constant", np.flatnonzero(const).tolist())
        scale[const] = 1.0
    z = (f - mean) / scale
    sign = np.where(y, -1.0, 1.0)  # target cost softplus(-a), non-target softplus(a)
    weight = np.where(y, p_target / y.sum(), (1.0 - p_target) / (~y).sum())
    offset = math.log(p_target / (1.0 - p_target))
    n_feat = z.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a = sign * (z @ theta[:n_feat] + theta[n_feat] + offset)
        loss = float(weight @ np.logaddexp(0.0, a)) + 0.5 * l2 * float(
            theta[:n_feat] @ theta[:n_feat]
        )
        g = weight * expit(a) * sign  # d loss / d (w.z + b)
        grad = np.append(z.T @ g + l2 * theta[:n_feat], g.sum())
        return loss, grad

    res = minimize(
        objective,
        np.zeros(n_feat + 1),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-10, "ftol": 1e-14},
    )
    if not res.success:
        logger.warning("calibration L-BFGS stopped early: %s", res.message)
    w_std, b_std = res.x[:n_feat], float(res.x[n_feat])
    weights = w_std / scale
    return weights, b_std - float(mean @ weights)


class LogisticCalibrator:
    """Linear (optionally quality-aware) calibration of scores to LLRs.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> llr = np.concatenate([rng.normal(2, 2, 2000), rng.normal(-2, 2, 2000)])
    >>> labels = np.repeat([1, 0], 2000)
    >>> cal = LogisticCalibrator(p_target=0.5).fit(0.5 * llr - 1.0, labels)
    >>> [round(float(v)) for v in (cal.weights[0], cal.bias)]  # llr = 2 * score + 2
    [2, 2]
    """

    def __init__(self, p_target: float = 0.05, l2: float = 0.0, max_iter: int = 1000) -> None:
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"p_target must be in (0, 1), got {p_target}")
        if l2 < 0.0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.p_target = p_target
        self.l2 = l2
        self.max_iter = max_iter
        self.weights: np.ndarray | None = None
        self.bias: float | None = None

    def fit(self, features: ArrayLike, labels: ArrayLike) -> LogisticCalibrator:
        """Fit on (N, F) features (column 0 the score, then quality measures) or (N,) scores."""
        self.weights, self.bias = fit_weighted_logistic(
            features, labels, self.p_target, self.l2, self.max_iter
        )
        logger.info("calibration weights %s bias %.4f", self.weights.tolist(), self.bias)
        return self

    def transform(self, features: ArrayLike) -> np.ndarray:
        """Calibrated LLRs (N,) of (N, F) or (N,) features."""
        if self.weights is None or self.bias is None:
            raise NotFittedError("calibrator is not fitted; call fit() or from_dict()")
        return _features(features, self.weights.shape[0]) @ self.weights + self.bias

    def fit_transform(self, features: ArrayLike, labels: ArrayLike) -> np.ndarray:
        return self.fit(features, labels).transform(features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters: ``{"kind", "p_target", "l2", "weights", "bias"}``."""
        if self.weights is None or self.bias is None:
            raise NotFittedError("calibrator is not fitted")
        return {
            "kind": "logistic",
            "p_target": self.p_target,
            "l2": self.l2,
            "weights": [float(v) for v in self.weights],
            "bias": float(self.bias),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticCalibrator:
        """Rebuild from :meth:`to_dict` output; ``ValueError`` on missing or bad fields."""
        expected = {"kind", "p_target", "l2", "weights", "bias"}
        if set(d) != expected or d["kind"] != "logistic":
            raise ValueError(
                f"not a logistic calibrator: keys {sorted(d)}, expected {sorted(expected)}"
            )
        w = np.asarray(d["weights"], dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
            raise ValueError(f"calibrator weights must be a non-empty finite list, got {w}")
        if not math.isfinite(float(d["bias"])):
            raise ValueError("calibrator bias must be finite")
        cal = cls(p_target=float(d["p_target"]), l2=float(d["l2"]))
        cal.weights, cal.bias = w, float(d["bias"])
        return cal


# --------------------------------------------------------------------------- trials

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
    short: tuple[float, float] = (2.0, 6.0),
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
