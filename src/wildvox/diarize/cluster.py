"""Clustering of window embeddings into speakers, and frame-level re-segmentation.

:func:`cluster_windows` is average-linkage agglomerative clustering on cosine distance; with
no speaker count it stops merging at :data:`STOP_DISTANCE`, then folds clusters of fewer than
``min_windows`` windows into their nearest larger one. :func:`resegment` moves the turn
boundaries from the window grid to ``frame`` seconds: each frame of speech takes the cluster
whose centroid is closest to the mean of the windows covering it.

Example (two well-separated groups of directions)::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = np.eye(8)[0], np.eye(8)[1]
    >>> emb = np.stack([a] * 4 + [b] * 4) + 0.05 * rng.standard_normal((8, 8))
    >>> cluster_windows(emb).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from wildvox.scoring.cosine import length_normalize

__all__ = ["STOP_DISTANCE", "centroids", "cluster_windows", "resegment"]

#: Cosine distance at which average-linkage merging stops when the speaker count is not given.
#: The lowest mean DER (16.2 %, collar 0; mean absolute count error 0.35) of a 0.40-0.95 grid on
#: 40 generated meetings (8 of each size 2-6, seeds 100000 + 1000 * size + i) that the benchmark
#: never uses: ``python bench/diarization.py calibrate`` (bench/results/diarization_calibration.md).
STOP_DISTANCE = 0.60
#: clusters with fewer windows than this are folded into the nearest larger cluster.
MIN_WINDOWS = 3


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse].astype(np.int64)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, D) unit centroids: the normalised mean of each cluster's unit embeddings (N, D)."""
    unit = length_normalize(np.asarray(embeddings, dtype=np.float64))
    k = int(labels.max()) + 1
    sums = np.zeros((k, unit.shape[1]))
    np.add.at(sums, labels, unit)
    return np.asarray(length_normalize(sums))


def cluster_windows(
    embeddings: np.ndarray,
    num_speakers: int | None = None,
    threshold: float = STOP_DISTANCE,
    min_windows: int = MIN_WINDOWS,
) -> np.ndarray:
    """Speaker labels (N,) int in 0..K-1 (first appearance order) of window embeddings (N, D).

    Args:
        embeddings: (N, D) window embeddings.
        num_speakers: K when known; else K is where merging passes ``threshold``.
        threshold: cosine distance (1 - cosine) stopping average-linkage merging.
        min_windows: with ``num_speakers`` unknown, clusters smaller than this are folded into
            the nearest (by centroid cosine) larger cluster, unless none is larger.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"embeddings must be (N, D) with N >= 1, got shape {emb.shape}")
    if num_speakers is not None and num_speakers < 1:
        raise ValueError(f"num_speakers must be >= 1, got {num_speakers}")
    n = emb.shape[0]
    if n == 1 or num_speakers == 1:
        return np.zeros(n, dtype=np.int64)
    tree = linkage(length_normalize(emb), method="average", metric="cosine")
    if num_speakers is not None:
        labels = fcluster(tree, t=min(num_speakers, n), criterion="maxclust")
        return _relabel(labels)
    labels = _relabel(fcluster(tree, t=threshold, criterion="distance"))
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= min_windows)
    if 0 < big.size < sizes.size:
        cents = centroids(emb, labels)
        unit = length_normalize(emb)
        small = ~np.isin(labels, big)
        nearest = big[np.argmax(unit[small] @ cents[big].T, axis=1)]
        labels[small] = nearest
        labels = _relabel(labels)
    return labels


def resegment(
    starts: np.ndarray,
    ends: np.ndarray,
    embeddings: np.ndarray,
    labels: np.ndarray,
    regions: Sequence[tuple[float, float]],
    frame: float = 0.1,
) -> list[tuple[float, float, int]]:
    """Turns ``[(start, end, label), ...]`` (s) over ``regions`` at ``frame``-second resolution.

    Each frame takes the label whose centroid is closest (cosine) to the mean of the windows
    covering the frame's centre (the nearest window when none covers it). Consecutive frames
    with one label form one turn; turns never cross a region boundary.

    Args:
        starts, ends: (N,) window times in seconds.
        embeddings: (N, D) window embeddings; labels: (N,) their clusters.
        regions: speech regions ``(start, end)`` in seconds.
    """
    if len(starts) == 0:
        return []
    order = np.argsort(starts, kind="stable")
    s, e = np.asarray(starts)[order], np.asarray(ends)[order]
    unit = length_normalize(np.asarray(embeddings, dtype=np.float64))[order]
    scores = unit @ centroids(embeddings, labels).T  # (N, K)
    longest = float(np.max(e - s))
    turns: list[tuple[float, float, int]] = []
    for a, b in regions:
        n = max(1, round((b - a) / frame))
        edges = np.linspace(a, b, n + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        best = np.empty(n, dtype=np.int64)
        for f, t in enumerate(centres):
            lo = int(np.searchsorted(s, t - longest, side="left"))
            hi = int(np.searchsorted(s, t, side="right"))
            cover = lo + np.flatnonzero(e[lo:hi] > t)
            if cover.size == 0:
                mid = (s + e) / 2
                cover = np.array([int(np.argmin(np.abs(mid - t)))])
            best[f] = int(np.argmax(scores[cover].mean(axis=0)))
        cuts = np.flatnonzero(np.diff(best)) + 1
        for lo_f, hi_f in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
            turns.append((float(edges[lo_f]), float(edges[hi_f]), int(best[lo_f])))
    return turns
