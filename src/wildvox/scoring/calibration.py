"""Score calibration: the calibrator, its trial features, and the calibration record.

:class:`LogisticCalibrator` maps per-trial features ``f = [score, quality measures ...]`` to a
natural-log LLR ``w . f + b``. It minimises the prior-weighted cross-entropy of BOSARIS'
``train_linear_calibration`` (Brümmer & van Leeuwen), as used by IDLab's quality-aware
calibration (Thienpondt et al., VoxSRC-20)::

    J(w, b) = p / N_tar * sum_tar log(1 + exp(-(w . f + b + logit p)))
            + (1 - p) / N_non * sum_non log(1 + exp(w . f + b + logit p))

solved with scipy's L-BFGS on standardised features, with the analytic gradient.

Quality-aware features (:func:`trial_features`) are the score followed by the min and max over
the two sides of each quality measure: log duration (clipped to the range the calibration was
fitted on) and the imposter mean. The weights of the score and of the durations are constrained
to be >= 0, so more speech never lowers the LLR of a given score.

:class:`Calibration` is the one calibration record, written by ``wildvox calibrate`` (score
files) and ``wildvox calibrate-model`` (into ``model.json``), read by the API: calibrator, the
features it takes, the scores it was fitted on, and the fitting trials' LLR distributions from
which every operating point (``eer``, ``min-dcf``, ``bayes``, ``far=X%``, ``frr=X%``) is placed.
Drawing calibration trials and fitting from embeddings is in
:mod:`wildvox.scoring.calibration_trials`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import expit

from wildvox.metrics.verification import check_trials, compute_eer, compute_min_dcf
from wildvox.scoring.plda import NotFittedError
from wildvox.scoring.quality import duration_quality, symmetric_quality

logger = logging.getLogger(__name__)

Quality = Literal["duration", "imposter"]
QUALITY_MEASURES: tuple[Quality, ...] = ("duration", "imposter")
NAMED_POINTS = ("eer", "min-dcf", "far=1%", "far=0.1%", "bayes")
#: IDLab's short utterance, in seconds: ``[2, 6)`` is short, ``>= 6`` long. Shorter inputs are
#: drawn with the short class, and a decision on under ``SHORT_SECONDS[0]`` s of speech is
#: flagged as less reliable.
SHORT_SECONDS = (2.0, 6.0)
CALIBRATION_KIND = "wildvox-calibration"

__all__ = [
    "NAMED_POINTS",
    "QUALITY_MEASURES",
    "SHORT_SECONDS",
    "Calibration",
    "LogisticCalibrator",
    "fit_weighted_logistic",
    "trial_features",
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
    nonnegative: Sequence[bool] | None = None,
) -> tuple[np.ndarray, float]:
    """Minimise the prior-weighted logistic objective (module docstring).

    Args:
        features: (N, F) or (N,) trial features.
        labels: (N,) 1 target / 0 non-target.
        p_target: effective target prior of the objective, in (0, 1).
        l2: ridge penalty ``0.5 * l2 * |w|^2`` on the standardised weights (0: none).
        max_iter: L-BFGS iterations.
        nonnegative: (F,) flags: the weights of flagged features are constrained to be >= 0
            (the LLR never decreases when they grow).

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

    if nonnegative is not None and len(nonnegative) != n_feat:
        raise ValueError(f"nonnegative has {len(nonnegative)} flags for {n_feat} features")
    flags = [False] * n_feat if nonnegative is None else list(nonnegative)
    bounds = [(0.0, None) if nn else (None, None) for nn in flags] + [(None, None)]
    res = minimize(
        objective,
        np.zeros(n_feat + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
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

    def __init__(
        self,
        p_target: float = 0.05,
        l2: float = 0.0,
        max_iter: int = 1000,
        nonnegative: Sequence[bool] | None = None,
    ) -> None:
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"p_target must be in (0, 1), got {p_target}")
        if l2 < 0.0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.p_target = p_target
        self.l2 = l2
        self.max_iter = max_iter
        self.nonnegative = None if nonnegative is None else [bool(v) for v in nonnegative]
        self.weights: np.ndarray | None = None
        self.bias: float | None = None

    def fit(self, features: ArrayLike, labels: ArrayLike) -> LogisticCalibrator:
        """Fit on (N, F) features (column 0 the score, then quality measures) or (N,) scores."""
        self.weights, self.bias = fit_weighted_logistic(
            features, labels, self.p_target, self.l2, self.max_iter, self.nonnegative
        )
        logger.info("calibration weights %s bias %.4f", self.weights.tolist(), self.bias)
        return self

    def transform(self, features: ArrayLike) -> np.ndarray:
        """Calibrated LLRs (N,) of (N, F) or (N,) features."""
        if self.weights is None or self.bias is None:
            raise NotFittedError("calibrator is not fitted; call fit() or from_dict()")
        return _features(features, self.weights.shape[0]) @ self.weights + self.bias

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


# --------------------------------------------------------------------------- features


def trial_features(
    scores: ArrayLike,
    quality: Sequence[str] = ("duration",),
    *,
    dur_a: ArrayLike | None = None,
    dur_b: ArrayLike | None = None,
    imp_a: ArrayLike | None = None,
    imp_b: ArrayLike | None = None,
    duration_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Calibration features of N trials, (N, 1 + 2Q): the score, then per quality measure the
    min and max over the two sides.

    ``"duration"``: log seconds (of speech, or of the file), clipped to ``duration_range``;
    ``"imposter"``: the mean of the side's top-N cohort scores.

    >>> trial_features([0.5], dur_a=[1.0], dur_b=[100.0], duration_range=(1.0, 10.0)).round(3)
    array([[0.5  , 0.   , 2.303]])
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be (N,), got shape {s.shape}")
    cols = [s[:, None]]
    for m in quality:
        if m == "duration":
            if dur_a is None or dur_b is None:
                raise ValueError("the duration quality measure needs the durations of both sides")
            lo, hi = duration_range if duration_range is not None else (None, None)
            cols.append(duration_quality(dur_a, dur_b, lo, hi))
        elif m == "imposter":
            if imp_a is None or imp_b is None:
                raise ValueError("the imposter quality measure needs cohort statistics")
            cols.append(symmetric_quality(imp_a, imp_b))
        else:
            raise ValueError(f"unknown quality measure {m!r}; valid: {list(QUALITY_MEASURES)}")
    out = np.hstack(cols)
    if out.shape[0] != s.shape[0]:
        raise ValueError(f"{s.shape[0]} scores but {out.shape[0]} quality values")
    return out


def _quantile(q: np.ndarray, level: float) -> float:
    """The value at ``level`` in [0, 1] of a distribution given by evenly spaced quantiles."""
    return float(np.interp(level, np.linspace(0.0, 1.0, len(q)), q))


def _rate(point: str, prefix: str) -> float | None:
    if not (point.startswith(prefix) and point.endswith("%")):
        return None
    try:
        rate = float(point[len(prefix) : -1]) / 100.0
    except ValueError:
        return None
    return rate if 0.0 < rate < 1.0 else None


# --------------------------------------------------------------------------- the record


@dataclass
class Calibration:
    """A fitted calibrator with what it needs to be applied and to place operating points.

    ``quality`` names the measures after the score (:func:`trial_features`); ``score`` the
    scores it was fitted on (``"cosine"``, ``"as-norm:<cohort digest>"``, or a score file's
    description); ``duration_range`` the seconds that durations are clipped to (the range of
    the fitting trials); the quantiles are those of the fitting trials' target and non-target
    LLRs (1001 evenly spaced levels); ``cohort`` how the imposter measure's statistics were
    computed (``{"top_n", "per"}``), when it is used.
    """

    calibrator: LogisticCalibrator
    thresholds: dict[str, float]
    target_quantiles: np.ndarray
    nontarget_quantiles: np.ndarray
    trials: int
    score: str = "cosine"
    quality: tuple[str, ...] = ("duration",)
    duration_range: tuple[float, float] | None = None
    cohort: dict[str, Any] = field(default_factory=dict)
    fitted_on: str = ""

    @classmethod
    def fit(
        cls,
        features: ArrayLike,
        labels: ArrayLike,
        *,
        quality: Sequence[str] = ("duration",),
        score: str = "cosine",
        duration_range: tuple[float, float] | None = None,
        p_target: float = 0.05,
        cohort: dict[str, Any] | None = None,
        fitted_on: str = "",
    ) -> Calibration:
        """Fit on (N, 1 + 2Q) :func:`trial_features` and their labels; the score's and the
        durations' weights are constrained to be >= 0. ``duration_range`` defaults to the
        range of the durations in ``features``."""
        f = np.asarray(features, dtype=np.float64)
        if duration_range is None and "duration" in quality and f.ndim == 2:
            j = 1 + 2 * list(quality).index("duration")  # log min / log max columns
            duration_range = (float(np.exp(f[:, j].min())), float(np.exp(f[:, j + 1].max())))
        nonneg = [True] + [m == "duration" for m in quality for _ in (0, 1)]
        cal = LogisticCalibrator(p_target=p_target, nonnegative=nonneg).fit(features, labels)
        llr = cal.transform(features)
        y = np.asarray(labels).astype(bool)
        grid = np.linspace(0.0, 1.0, 1001)
        result = cls(
            calibrator=cal,
            thresholds={
                "eer": compute_eer(llr, y)[1],
                "min-dcf": compute_min_dcf(llr, y, p_target=0.01)[1],
                "bayes": float(math.log(0.99 / 0.01)),  # Bayes decision at p_target = 0.01
            },
            target_quantiles=np.quantile(llr[y], grid),
            nontarget_quantiles=np.quantile(llr[~y], grid),
            trials=int(y.size),
            score=score,
            quality=tuple(quality),
            duration_range=duration_range,
            cohort=dict(cohort or {}),
            fitted_on=fitted_on,
        )
        for point in ("far=1%", "far=0.1%"):
            result.thresholds[point] = result.threshold(point)
        return result

    def llr(
        self,
        scores: ArrayLike,
        dur_a: ArrayLike | None = None,
        dur_b: ArrayLike | None = None,
        *,
        imp_a: ArrayLike | None = None,
        imp_b: ArrayLike | None = None,
    ) -> np.ndarray:
        """Calibrated LLRs (N,) (natural log) of N trials, from :func:`trial_features` with
        this record's measures and duration range."""
        features = trial_features(
            scores, self.quality, dur_a=dur_a, dur_b=dur_b, imp_a=imp_a, imp_b=imp_b,
            duration_range=self.duration_range,
        )  # fmt: skip
        return self.calibrator.transform(features)

    def threshold(self, point: str) -> float:
        """LLR threshold of a named point (``eer``, ``min-dcf``, ``bayes``) or ``far=X%`` /
        ``frr=X%`` with any X in (0, 100)."""
        if point in self.thresholds:
            return self.thresholds[point]
        far, frr = _rate(point, "far="), _rate(point, "frr=")
        if far is not None:
            return _quantile(self.nontarget_quantiles, 1.0 - far)
        if frr is not None:
            return _quantile(self.target_quantiles, frr)
        valid = ", ".join([*self.thresholds, "far=X%", "frr=X%"])
        raise ValueError(f"unknown operating point {point!r}; valid: {valid}")

    def identification_threshold(self, point: str, enrolled: int) -> float:
        """LLR threshold for open-set identification against ``enrolled`` speakers.

        The best of ``enrolled`` impostor scores passes a per-trial threshold far more often
        than one does, so a ``far=X%`` point is read as the open-set rate (an impostor accepted
        as anyone) and mapped to the per-trial rate ``1 - (1 - X) ** (1 / enrolled)`` (Sidak);
        other points are used as they are.
        """
        if enrolled < 1:
            raise ValueError(f"enrolled must be >= 1, got {enrolled}")
        single = self.threshold(point)  # also validates the point
        rate = _rate(point, "far=")
        if rate is None:
            return single
        per_trial = 1.0 - (1.0 - rate) ** (1.0 / enrolled)
        return _quantile(self.nontarget_quantiles, 1.0 - per_trial)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``kind: wildvox-calibration``)."""
        return {
            "kind": CALIBRATION_KIND,
            "calibrator": self.calibrator.to_dict(),
            "quality": list(self.quality),
            "score": self.score,
            "duration_range": None if self.duration_range is None else list(self.duration_range),
            "cohort": self.cohort,
            "thresholds": self.thresholds,
            "target_quantiles": self.target_quantiles.tolist(),
            "nontarget_quantiles": self.nontarget_quantiles.tolist(),
            "trials": self.trials,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Calibration:
        """Rebuild from :meth:`to_dict`; ``ValueError`` naming the problem otherwise."""
        if not isinstance(d, dict) or d.get("kind") != CALIBRATION_KIND:
            raise ValueError(f"not a calibration record (no 'kind: {CALIBRATION_KIND}')")
        try:
            quality = tuple(str(m) for m in d["quality"])
            bad = [m for m in quality if m not in QUALITY_MEASURES]
            if bad:
                raise ValueError(f"unknown quality measure(s) {bad}")
            rng = d["duration_range"]
            duration_range = None if rng is None else (float(rng[0]), float(rng[1]))
            if duration_range is not None and not 0 < duration_range[0] <= duration_range[1]:
                raise ValueError(f"duration_range {duration_range} is not 0 < lo <= hi")
            cal = LogisticCalibrator.from_dict(d["calibrator"])
            if cal.weights is not None and cal.weights.size != 1 + 2 * len(quality):
                raise ValueError(
                    f"{cal.weights.size} weights for the score and {len(quality)} measure(s)"
                )
            record = cls(
                calibrator=cal,
                thresholds={str(k): float(v) for k, v in d["thresholds"].items()},
                target_quantiles=np.asarray(d["target_quantiles"], dtype=np.float64),
                nontarget_quantiles=np.asarray(d["nontarget_quantiles"], dtype=np.float64),
                trials=int(d["trials"]),
                score=str(d["score"]),
                quality=quality,
                duration_range=duration_range,
                cohort=dict(d.get("cohort") or {}),
                fitted_on=str(d.get("fitted_on", "")),
            )
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"not a calibration record (missing or bad {exc})") from exc
        for q in (record.target_quantiles, record.nontarget_quantiles):
            if q.ndim != 1 or q.size < 2 or not np.isfinite(q).all() or (np.diff(q) < 0).any():
                raise ValueError("calibration quantiles must be finite and non-decreasing")
        return record
