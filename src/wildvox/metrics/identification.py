"""Closed-set speaker-identification metrics: top-k accuracy, macro F1, confusion matrix.

>>> import numpy as np
>>> scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
>>> top_k_accuracy(scores, np.array([0, 1, 1]), k=1)
0.6666666666666666
>>> top_k_accuracy(scores, np.array([0, 1, 1]), k=2)
1.0
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger(__name__)

__all__ = ["confusion_matrix", "identification_report", "macro_f1", "top_k_accuracy"]


def _class_array(x: ArrayLike, name: str, num_classes: int | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(a.dtype, np.integer) and (
        not np.issubdtype(a.dtype, np.floating) or np.any(a != np.round(a))
    ):
        raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.min() < 0:
        raise ValueError(f"{name} has negative class indices (min {int(a.min())})")
    if num_classes is not None and a.max() >= num_classes:
        raise ValueError(f"{name} has class index {int(a.max())} but num_classes is {num_classes}")
    return a


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int = 1) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores.

    Args:
        scores: (N, C) class scores (logits, cosines or posteriors; higher is better).
        labels: (N,) true class indices in [0, C).
        k: 1 <= k <= C.

    Ties are resolved in favour of the true class: a row counts as correct when fewer than
    ``k`` classes score strictly higher than the true class.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {s.shape}")
    n, c = s.shape
    y = _class_array(labels, "labels", c)
    if y.shape[0] != n:
        raise ValueError(f"scores has {n} rows but labels has {y.shape[0]}")
    if not 1 <= k <= c:
        raise ValueError(f"k must be in [1, {c}] for {c} classes, got {k}")
    n_nan = int(np.count_nonzero(np.isnan(s)))
    if n_nan:
        raise ValueError(f"scores contains {n_nan} NaN value(s)")
    true = s[np.arange(n), y]
    higher = np.count_nonzero(s > true[:, None], axis=1)
    return float(np.mean(higher < k))


def confusion_matrix(pred: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts ``m[true, predicted]``, shape (C, C), int64."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = _class_array(pred, "pred", num_classes)
    y = _class_array(labels, "labels", num_classes)
    if p.shape != y.shape:
        raise ValueError(f"pred has {p.shape[0]} items but labels has {y.shape[0]}")
    flat = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def macro_f1(pred: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> float:
    """Unweighted mean of the per-class F1 scores.

    Averages over the classes that occur in ``labels`` or ``pred`` (a class that occurs in
    neither has an undefined F1 and is left out, as scikit-learn's ``f1_score(average="macro")``
    does). ``num_classes``, when given, bounds the valid class indices.
    """
    p = _class_array(pred, "pred", num_classes)
    y = _class_array(labels, "labels", num_classes)
    if p.shape != y.shape:
        raise ValueError(f"pred has {p.shape[0]} items but labels has {y.shape[0]}")
    c = int(max(p.max(), y.max())) + 1 if num_classes is None else num_classes
    tp = np.bincount(y[p == y], minlength=c).astype(np.float64)
    n_pred = np.bincount(p, minlength=c).astype(np.float64)
    n_true = np.bincount(y, minlength=c).astype(np.float64)
    present = (n_pred + n_true) > 0
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (n_pred + n_true).
    f1 = 2.0 * tp[present] / (n_pred[present] + n_true[present])
    return float(f1.mean())


def identification_report(scores: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Top-1, top-5 (top-C when C < 5) accuracy and macro F1 of the arg-max decisions.

    Args:
        scores: (N, C) class scores.
        labels: (N,) true class indices.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {s.shape}")
    c = s.shape[1]
    top1 = top_k_accuracy(s, labels, 1)
    return {
        "top1": top1,
        "top5": top_k_accuracy(s, labels, min(5, c)),
        "macro_f1": macro_f1(np.argmax(s, axis=1), labels, num_classes=c),
    }
