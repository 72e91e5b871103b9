"""Cosine scoring of verification trials.

>>> import numpy as np
>>> cosine_score_pairs(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 3.0]]))
array([1.        , 0.70710678])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from wildvox.scoring.embeddings import EmbeddingSet

logger = logging.getLogger(__name__)

__all__ = [
    "cosine_score_pairs",
    "enroll_mean",
    "length_normalize",
    "score_trials",
    "speaker_means",
]

_EPS = 1e-12
_CHUNK = 65536  # trials per gather, bounds memory to ~2 * 65536 * D * 8 bytes


def length_normalize(x: ArrayLike, eps: float = _EPS) -> np.ndarray:
    """Scale each vector along the last axis to unit L2 norm.

    Args:
        x: (..., D) float array.
        eps: norms below ``eps`` are clamped (an all-zero vector stays zero).

    Returns:
        (..., D) float array of the input's float dtype (float64 for integer input).
    """
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if a.ndim == 0:
        raise ValueError("length_normalize needs at least a 1-D array")
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(norm, eps).astype(a.dtype)


def _check_pair(enroll: np.ndarray, test: np.ndarray) -> None:
    if enroll.ndim != 2 or test.ndim != 2:
        raise ValueError(
            f"enroll and test must be (N, D), got shapes {enroll.shape} and {test.shape}"
        )
    if enroll.shape[1] != test.shape[1]:
        raise ValueError(
            f"embedding dimension mismatch: enroll is {enroll.shape[1]}-d, "
            f"test is {test.shape[1]}-d"
        )
    if enroll.shape[0] != test.shape[0]:
        raise ValueError(f"{enroll.shape[0]} enroll rows but {test.shape[0]} test rows")


def cosine_score_pairs(enroll: ArrayLike, test: ArrayLike) -> np.ndarray:
    """Row-wise cosine similarity.

    Args:
        enroll: (N, D) embeddings.
        test: (N, D) embeddings.

    Returns:
        (N,) cosine of ``enroll[i]`` and ``test[i]``, in [-1, 1].
    """
    e = np.asarray(enroll)
    t = np.asarray(test)
    _check_pair(e, t)
    return np.einsum("nd,nd->n", length_normalize(e), length_normalize(t))


def score_trials(
    emb: EmbeddingSet,
    enroll_ids: Sequence[str],
    test_ids: Sequence[str],
    test_emb: EmbeddingSet | None = None,
) -> np.ndarray:
    """Cosine score of each trial ``enroll_ids[i]`` vs ``test_ids[i]``.

    Args:
        emb: embeddings holding every enrollment id (and every test id unless ``test_emb``).
        enroll_ids: N enrollment utterance ids.
        test_ids: N test utterance ids.
        test_emb: optional separate set for the test side; must have the same dimension.

    Returns:
        (N,) float64 scores.

    Raises:
        KeyError: listing a few ids without an embedding.
        ValueError: for lists of different length or a dimension mismatch.
    """
    if len(enroll_ids) != len(test_ids):
        raise ValueError(f"{len(enroll_ids)} enroll ids but {len(test_ids)} test ids")
    tset = emb if test_emb is None else test_emb
    if tset.dim != emb.dim:
        raise ValueError(
            f"embedding dimension mismatch: enroll set is {emb.dim}-d, test set is {tset.dim}-d"
        )
    e_rows = emb.index(enroll_ids)
    t_rows = tset.index(test_ids)
    e_norm = length_normalize(emb.embeddings)
    t_norm = e_norm if tset is emb else length_normalize(tset.embeddings)
    scores = np.empty(len(e_rows), dtype=np.float64)
    for start in range(0, len(e_rows), _CHUNK):
        sl = slice(start, start + _CHUNK)
        a = e_norm[e_rows[sl]].astype(np.float64)
        b = t_norm[t_rows[sl]].astype(np.float64)
        scores[sl] = np.einsum("nd,nd->n", a, b)
    logger.debug("scored %d trials", scores.shape[0])
    return scores


def speaker_means(
    embs: ArrayLike,
    groups: ArrayLike,
    weights: ArrayLike | None = None,
    renormalize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The one speaker pooling: (weighted) mean of length-normalised embeddings per group.

    Used for enrolment models (:func:`enroll_mean`), AS-Norm cohorts of speaker means and the
    speaker store's pooled vectors.

    Args:
        embs: (N, D) embeddings.
        groups: (N,) group label of each row (speaker name or id), in any order.
        weights: optional (N,) non-negative weights (seconds of speech), not all zero per group.
        renormalize: scale each mean back to unit length.

    Returns:
        ``(keys (S,), means (S, D))``: the sorted distinct labels and each one's mean, in the
        embeddings' float dtype.

    >>> keys, means = speaker_means(np.array([[2.0, 0], [0, 1], [0, 3]]), ["b", "a", "b"])
    >>> keys.tolist(), means.tolist()
    (['a', 'b'], [[0.0, 1.0], [0.5, 0.5]])
    """
    e = np.asarray(embs)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"embeddings must be (N, D) with N >= 1, got shape {e.shape}")
    g = np.asarray(groups)
    if g.shape != (e.shape[0],):
        raise ValueError(f"groups must be ({e.shape[0]},), got shape {g.shape}")
    x = length_normalize(e)
    keys, inverse = np.unique(g, return_inverse=True)
    inverse = inverse.ravel()
    if weights is None:
        w = np.ones(e.shape[0], dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (e.shape[0],):
            raise ValueError(f"weights (durations) must be ({e.shape[0]},), got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights (durations) must be finite and >= 0")
    total = np.bincount(inverse, weights=w, minlength=keys.size)
    if (total <= 0).any():
        raise ValueError(f"{int((total <= 0).sum())} group(s) have all-zero weights")
    sums = np.zeros((keys.size, e.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, w[:, None] * x)
    means = sums / total[:, None]
    if renormalize:
        means = length_normalize(means)
    return keys, means.astype(x.dtype, copy=False)


def enroll_mean(
    embs: ArrayLike, durations: ArrayLike | None = None, renormalize: bool = False
) -> np.ndarray:
    """Speaker model from several enrollment utterances: :func:`speaker_means` of one group.

    Args:
        embs: (K, D) embeddings of one speaker.
        durations: optional (K,) seconds used as weights.
        renormalize: scale the mean back to unit length (cosine scoring does not need it).

    Returns:
        (D,) the (weighted) mean of the length-normalised embeddings.
    """
    e = np.asarray(embs)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"embs must be (K, D) with K >= 1, got shape {e.shape}")
    return speaker_means(e, np.zeros(e.shape[0], dtype=np.int64), durations, renormalize)[1][0]
