"""The first paper's non-neural pieces: mean log-Mel vectors, the RBF-SVM baseline and the
K-Means/PCA picture of Figure 1.

scikit-learn (the ``bench`` extra) and matplotlib (``plots``) are imported on first use.

>>> rng = np.random.default_rng(0)
>>> centers = np.eye(3) * 10
>>> x = np.repeat(centers, 20, axis=0) + rng.normal(size=(60, 3))
>>> y = np.repeat(np.arange(3), 20)
>>> svm_baseline(x[::2], y[::2], x[1::2], y[1::2])["top1"]
1.0
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wildvox.audio.io import load_audio
from wildvox.config import Config
from wildvox.data.corpora.voxceleb import audio_root
from wildvox.metrics.identification import macro_f1, top_k_accuracy
from wildvox.models.speaker_net import build_features
from wildvox.registry import optional_import

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


def mean_logmel(
    root: Path,
    ids: Sequence[str],
    cfg: Config | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Utterance-level mean log-Mel vectors, (N, n_mels) float32.

    The filterbank is the one the models use (``cfg.features``, default :class:`Config`'s)
    without mean normalisation, whose utterance mean would be zero.
    """
    feats_cfg = dataclasses.replace((cfg or Config()).features, cmn=False)
    fbank = build_features(dataclasses.replace(cfg or Config(), features=feats_cfg))
    wav = audio_root(root)
    out = np.zeros((len(ids), feats_cfg.n_mels), dtype=np.float32)
    with torch.inference_mode():
        for i, uid in enumerate(ids):
            x = torch.from_numpy(load_audio(wav / uid, sample_rate=feats_cfg.sample_rate))
            f, _ = fbank(x.unsqueeze(0))
            out[i] = f[0].mean(0).numpy()
            if progress is not None:
                progress(1)
    return out


def svm_baseline(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float = 1.0,
) -> dict[str, Any]:
    """The paper's baseline: an RBF-kernel SVM (``C = c``, ``gamma="scale"``) on standardised
    features.

    Args:
        train_x: (N, D) training features; train_y: (N,) integer classes.
        test_x: (M, D) test features; test_y: (M,) integer classes seen in training.

    Returns:
        top1 (arg-max of the one-vs-rest decision function), top5 (ranked by it), macro_f1,
        and the counts. Features are standardised with the training mean and std.
    """
    svm = optional_import("sklearn.svm", "bench", "the SVM baseline")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    unknown = sorted(set(test_y.tolist()) - set(train_y.tolist()))
    if unknown:
        raise ValueError(f"test classes {unknown[:5]} have no training samples")
    clf = svm.SVC(C=c, kernel="rbf", gamma="scale", decision_function_shape="ovr")
    clf.fit((train_x - mean) / std, train_y)
    scores = np.asarray(clf.decision_function((test_x - mean) / std), dtype=np.float64)
    classes = np.asarray(clf.classes_)
    if scores.ndim == 1:  # two classes: one column, positive = classes[1]
        scores = np.stack([-scores, scores], axis=1)
    col = {int(k): j for j, k in enumerate(classes.tolist())}
    labels = np.asarray([col[int(t)] for t in test_y])
    pred = np.argmax(scores, axis=1)
    return {
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, min(5, scores.shape[1])),
        "macro_f1": macro_f1(pred, labels, num_classes=scores.shape[1]),
        "train utterances": len(train_y),
        "test utterances": len(test_y),
        "classes": len(classes),
        "test classes": len(set(test_y.tolist())),
        "chance top1": 1.0 / len(classes),
    }


@dataclasses.dataclass
class ClusterPicture:
    """K-Means on the test set and its 2-D PCA projection.

    Attributes:
        points: (M, 2) test points in the PCA plane.
        clusters: (M,) K-Means cluster of each test point.
        labels: (M,) true class index of each test point.
        ari: adjusted Rand index between clusters and labels.
        nmi: normalised mutual information between clusters and labels.
        explained: variance share of the two principal components (on the PCA fit set).
    """

    points: np.ndarray
    clusters: np.ndarray
    labels: np.ndarray
    ari: float
    nmi: float
    explained: float


def cluster_picture(
    fit_x: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int,
    pca_fit: int = 1000,
    seed: int = 0,
) -> ClusterPicture:
    """Figure 1's computation: K-Means centres learnt on ``fit_x`` (K = ``k``), test points
    assigned to them; PCA fitted on at most ``pca_fit`` rows of ``fit_x``.

    Args:
        fit_x: (N, D) training vectors (the paper: at most 50 utterances a speaker).
        test_x: (M, D) test vectors; test_y: (M,) their true classes.
        k: number of clusters (the number of speakers).
    """
    cluster = optional_import("sklearn.cluster", "bench", "the K-Means figure")
    decomposition = optional_import("sklearn.decomposition", "bench", "the K-Means figure")
    metrics = optional_import("sklearn.metrics", "bench", "the K-Means figure")
    rng = np.random.default_rng(seed)
    km = cluster.KMeans(n_clusters=k, n_init=10, random_state=seed).fit(fit_x)
    clusters = np.asarray(km.predict(test_x))
    rows = rng.permutation(len(fit_x))[:pca_fit]
    pca = decomposition.PCA(n_components=2, random_state=seed).fit(fit_x[rows])
    return ClusterPicture(
        points=np.asarray(pca.transform(test_x)),
        clusters=clusters,
        labels=np.asarray(test_y),
        ari=float(metrics.adjusted_rand_score(test_y, clusters)),
        nmi=float(metrics.normalized_mutual_info_score(test_y, clusters)),
        explained=float(np.sum(pca.explained_variance_ratio_)),
    )


def matched_clusters(clusters: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cluster ids renamed to the true class they overlap most (Hungarian matching), so that a
    cluster and its speaker share a colour; unmatched clusters get ids after the classes.

    >>> matched_clusters(np.array([2, 2, 0, 1]), np.array([0, 0, 1, 1])).tolist()
    [0, 0, 1, 2]
    """
    optimize = optional_import("scipy.optimize", "plots", "the K-Means figure")
    k, c = int(clusters.max()) + 1, int(labels.max()) + 1
    overlap = np.zeros((k, c), dtype=np.int64)
    np.add.at(overlap, (clusters, labels), 1)
    rows, cols = optimize.linear_sum_assignment(-overlap)
    rename = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    spare = iter(range(c, c + k))
    for j in range(k):
        if j not in rename:
            rename[j] = next(spare)
    return np.asarray([rename[int(j)] for j in clusters], dtype=np.int64)


def plot_clusters(pic: ClusterPicture, path: Path, title: str) -> Path:
    """Two scatter panels in the PCA plane: K-Means clusters (left, coloured as the speaker
    each cluster matches best), true speakers (right)."""
    figure_cls = optional_import("matplotlib.figure", "plots", "the K-Means figure").Figure
    fig = figure_cls(figsize=(11, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    shown = matched_clusters(pic.clusters, pic.labels)
    top = int(max(shown.max(), pic.labels.max()))
    cmap = "tab20" if top < 20 else "nipy_spectral"
    for ax, colour, name in (
        (axes[0], shown, f"K-Means clusters (ARI {pic.ari:.3f}, NMI {pic.nmi:.3f})"),
        (axes[1], pic.labels, "true speakers"),
    ):
        ax.scatter(
            pic.points[:, 0],
            pic.points[:, 1],
            c=colour,
            cmap=cmap,
            vmin=0,
            vmax=top,
            s=9,
            alpha=0.8,
        )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("PC 1")
    axes[0].set_ylabel("PC 2")
    fig.suptitle(f"{title} (PCA: {100 * pic.explained:.1f} % of the variance)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
