"""Calibration shipped with a model: score -> log-likelihood ratio, and named operating points.

The calibration is a quality-aware logistic regression (IDLab VoxSRC-20): the features of a
trial are its cosine score and the log durations of its shorter and longer side, so a short
input gets a more cautious LLR. It is fitted on duration-stratified trials (short-short,
short-long, long-long) of speakers the model was not trained on, and stored in ``model.json``
together with the LLR distributions needed to place any operating point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wildvox.inference.cohort import ScoreCohort
from wildvox.metrics.verification import compute_eer, compute_min_dcf
from wildvox.scoring.calibration import LogisticCalibrator, build_calibration_trials
from wildvox.scoring.cosine import cosine_score_pairs

NAMED_POINTS = ("eer", "min-dcf", "far=1%", "far=0.1%", "bayes")
SHORT_SECONDS = 2.0


def trial_features(scores: np.ndarray, dur_a: np.ndarray, dur_b: np.ndarray) -> np.ndarray:
    """(N, 3) calibration features: score, log of the shorter and of the longer duration."""
    lo = np.log(np.maximum(np.minimum(dur_a, dur_b), 0.1))
    hi = np.log(np.maximum(np.maximum(dur_a, dur_b), 0.1))
    return np.stack([scores, lo, hi], axis=1)


def _quantile(q: np.ndarray, level: float) -> float:
    """The value at ``level`` in [0, 1] of a distribution given by evenly spaced quantiles."""
    return float(np.interp(level, np.linspace(0.0, 1.0, len(q)), q))


@dataclass
class ModelCalibration:
    """A fitted calibrator, operating-point thresholds on the LLR, and the calibration trials'
    target / non-target LLR quantiles (for ``far=X%`` / ``frr=X%`` points). ``score`` names the
    scores it was fitted on: ``"cosine"`` or ``"as-norm:<cohort digest>"``."""

    calibrator: LogisticCalibrator
    thresholds: dict[str, float]
    target_quantiles: np.ndarray
    nontarget_quantiles: np.ndarray
    trials: int
    score: str = "cosine"

    def llr(self, scores: np.ndarray, dur_a: np.ndarray, dur_b: np.ndarray) -> np.ndarray:
        return self.calibrator.transform(trial_features(scores, dur_a, dur_b))

    def threshold(self, point: str) -> float:
        """LLR threshold of a named point (``eer``, ``min-dcf``, ``bayes``) or ``far=X%`` /
        ``frr=X%`` with any X."""
        if point in self.thresholds:
            return self.thresholds[point]
        for prefix, q, upper in (("far=", self.nontarget_quantiles, True),
                                 ("frr=", self.target_quantiles, False)):  # fmt: skip
            if point.startswith(prefix) and point.endswith("%"):
                try:
                    rate = float(point[len(prefix) : -1]) / 100.0
                except ValueError:
                    break
                if not 0.0 < rate < 1.0:
                    break
                return _quantile(q, 1.0 - rate if upper else rate)
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
        if not point.startswith("far="):
            return single
        rate = float(point[4:-1]) / 100.0
        per_trial = 1.0 - (1.0 - rate) ** (1.0 / enrolled)
        return _quantile(self.nontarget_quantiles, 1.0 - per_trial)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibrator": self.calibrator.to_dict(),
            "thresholds": self.thresholds,
            "target_quantiles": self.target_quantiles.tolist(),
            "nontarget_quantiles": self.nontarget_quantiles.tolist(),
            "trials": self.trials,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCalibration:
        try:
            return cls(
                calibrator=LogisticCalibrator.from_dict(d["calibrator"]),
                thresholds={str(k): float(v) for k, v in d["thresholds"].items()},
                target_quantiles=np.asarray(d["target_quantiles"], dtype=np.float64),
                nontarget_quantiles=np.asarray(d["nontarget_quantiles"], dtype=np.float64),
                trials=int(d["trials"]),
                score=str(d.get("score", "cosine")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a model calibration record ({exc})") from exc


def fit_model_calibration(
    embeddings: np.ndarray,
    durations: np.ndarray,
    speakers: Sequence[str],
    seed: int = 0,
    n_per_class: int = 10000,
    short: tuple[float, float] = (SHORT_SECONDS, 6.0),
    p_target: float = 0.05,
    cohort: ScoreCohort | None = None,
) -> ModelCalibration:
    """Fit the calibration on embeddings (N, D) of held-out speakers' utterances, on cosine
    scores or, with a ``cohort``, on AS-normalised ones (as the model will score)."""
    rng = np.random.default_rng(seed)
    # every duration class of the paper, plus "very short" (< 2 s) inputs, which are most of
    # what wildvox users and wildmix have: they join the short class
    trials = build_calibration_trials(
        np.asarray(speakers), np.maximum(durations, short[0]), rng, n_per_class, short
    )
    enroll, test = embeddings[trials.enroll], embeddings[trials.test]
    if cohort is None:
        scores = cosine_score_pairs(enroll, test)
    else:
        scores = cohort.score_pairs(enroll, test)
    feats = trial_features(scores, durations[trials.enroll], durations[trials.test])
    cal = LogisticCalibrator(p_target=p_target).fit(feats, trials.labels)
    llr = cal.transform(feats)
    labels = trials.labels
    grid = np.linspace(0.0, 1.0, 1001)
    thresholds = {
        "eer": compute_eer(llr, labels)[1],
        "min-dcf": compute_min_dcf(llr, labels, p_target=0.01)[1],
        "bayes": float(np.log(0.99 / 0.01)),  # Bayes decision at p_target = 0.01
    }
    result = ModelCalibration(
        calibrator=cal,
        thresholds=thresholds,
        target_quantiles=np.quantile(llr[labels == 1], grid),
        nontarget_quantiles=np.quantile(llr[labels == 0], grid),
        trials=len(labels),
        score="cosine" if cohort is None else f"as-norm:{cohort.digest}",
    )
    for point in ("far=1%", "far=0.1%"):
        result.thresholds[point] = result.threshold(point)
    return result
