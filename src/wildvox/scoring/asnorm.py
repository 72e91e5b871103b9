"""Adaptive symmetric score normalisation (AS-Norm, Cumani et al. 2011; Matějka et al. 2017).

For a trial (e, t) with raw score s::

    s' = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)

where ``mu_e``/``sd_e`` are the mean and standard deviation of the ``top_n`` highest cosine
scores between the enrollment embedding and the cohort (likewise for the test side). IDLab
(VoxSRC-20) and Cerizza both use ``top_n = 100`` and a cohort of per-speaker means of
length-normalised training embeddings (:func:`make_cohort`). We use the population standard
deviation (``ddof=0``), as WeSpeaker does.

Cohort statistics are computed once per distinct utterance, in chunks of ``chunk_size`` rows,
so memory stays at about ``chunk_size * C`` floats whatever the number of trials.

Every AS-Norm in wildvox goes through :func:`cohort_stats` and :func:`asnorm_from_stats`: the
array function :func:`asnorm`, the trial-list form :func:`trial_stats` (``wildvox normalize``,
the back-end report, calibration), and the shipped model's
:class:`~wildvox.scoring.cohort.ScoreCohort`. With speaker labels, an utterance's own speaker is
left out of its cohort: calibration trials drawn from training speakers would otherwise score
their own speaker mean among the "imposters".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from wildvox.data.corpora.voxceleb import speakers_of_ids
from wildvox.scoring.cosine import length_normalize, speaker_means
from wildvox.scoring.embeddings import EmbeddingSet

logger = logging.getLogger(__name__)

__all__ = [
    "asnorm",
    "asnorm_from_stats",
    "cohort_stats",
    "make_cohort",
    "trial_stats",
]


def _float_matrix(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def cohort_stats(
    emb: ArrayLike,
    cohort: ArrayLike,
    top_n: int | None = 100,
    chunk_size: int = 4096,
    metric: Literal["cosine", "dot"] = "cosine",
    *,
    speakers: ArrayLike | None = None,
    cohort_speakers: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each embedding's ``top_n`` highest cohort scores.

    Args:
        emb: (U, D) embeddings (one per distinct utterance).
        cohort: (C, D) cohort embeddings.
        top_n: number of closest cohort entries, 1 <= top_n <= C; None uses all C.
        chunk_size: rows of ``emb`` scored against the cohort at once.
        metric: ``"cosine"`` (length-normalise both sides) or ``"dot"`` (inner product of the
            embeddings as given, IDLab's imposter-mean quality measure).
        speakers: (U,) speaker of each embedding, with ``cohort_speakers`` (C,): the cohort
            rows of an embedding's own speaker are left out of its statistics.

    Returns:
        ``(mean (U,), std (U,))`` in float64; computed in float32 when both inputs are float32.

    >>> c = np.eye(3)
    >>> m, s = cohort_stats(np.array([[1.0, 0, 0]]), c, top_n=2)
    >>> m.tolist(), s.tolist()
    ([0.5], [0.5])
    >>> cohort_stats(np.array([[1.0, 0, 0]]), c, 2, speakers=["a"],
    ...              cohort_speakers=["a", "b", "c"])[0].tolist()
    [0.0]
    """
    if (speakers is None) != (cohort_speakers is None):
        raise ValueError("give both speakers and cohort_speakers, or neither")
    if speakers is not None and cohort_speakers is not None:
        return _stats_without_own_speaker(
            emb, cohort, top_n, chunk_size, metric, np.asarray(speakers),
            np.asarray(cohort_speakers),
        )  # fmt: skip
    e = _float_matrix(emb, "embeddings")
    c = _float_matrix(cohort, "cohort")
    if e.shape[1] != c.shape[1]:
        raise ValueError(
            f"embedding dimension mismatch: embeddings are {e.shape[1]}-d, cohort is {c.shape[1]}-d"
        )
    n_coh = c.shape[0]
    k = n_coh if top_n is None else int(top_n)
    if not 1 <= k <= n_coh:
        raise ValueError(f"top_n must be in [1, {n_coh}] for a cohort of {n_coh}, got {top_n}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if metric not in ("cosine", "dot"):
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    dtype = np.result_type(e.dtype, c.dtype, np.float32)
    c_t = c.astype(dtype, copy=False)
    c_t = (length_normalize(c_t) if metric == "cosine" else c_t).T.copy()  # (D, C)
    mean = np.empty(e.shape[0], dtype=np.float64)
    std = np.empty(e.shape[0], dtype=np.float64)
    for start in range(0, e.shape[0], chunk_size):
        block = e[start : start + chunk_size].astype(dtype, copy=False)
        if metric == "cosine":
            block = length_normalize(block)
        s = block @ c_t  # (B, C)
        if k < n_coh:
            s = np.partition(s, n_coh - k, axis=1)[:, n_coh - k :]
        s64 = s.astype(np.float64, copy=False)
        stop = start + s.shape[0]
        mean[start:stop] = s64.mean(axis=1)
        std[start:stop] = s64.std(axis=1)
    return mean, std


def _stats_without_own_speaker(
    emb: ArrayLike,
    cohort: ArrayLike,
    top_n: int | None,
    chunk_size: int,
    metric: Literal["cosine", "dot"],
    spk: np.ndarray,
    c_spk: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    e, c = _float_matrix(emb, "embeddings"), _float_matrix(cohort, "cohort")
    if spk.shape != (e.shape[0],) or c_spk.shape != (c.shape[0],):
        raise ValueError(
            f"speakers {spk.shape} / cohort_speakers {c_spk.shape} do not fit embeddings "
            f"{e.shape} / cohort {c.shape}"
        )
    mean, std = np.empty(e.shape[0]), np.empty(e.shape[0])
    overlap = np.isin(spk, c_spk)
    if (~overlap).any():
        mean[~overlap], std[~overlap] = cohort_stats(e[~overlap], c, top_n, chunk_size, metric)
    for s in np.unique(spk[overlap]):
        rows = spk == s
        mean[rows], std[rows] = cohort_stats(e[rows], c[c_spk != s], top_n, chunk_size, metric)
    return mean, std


def asnorm_from_stats(
    scores: ArrayLike,
    mean_e: ArrayLike,
    std_e: ArrayLike,
    mean_t: ArrayLike,
    std_t: ArrayLike,
) -> np.ndarray:
    """``0.5 * ((s - mean_e) / std_e + (s - mean_t) / std_t)``, all arguments (N,)."""
    s = np.asarray(scores, dtype=np.float64)
    parts = [np.asarray(a, dtype=np.float64) for a in (mean_e, std_e, mean_t, std_t)]
    if s.ndim != 1 or any(p.shape != s.shape for p in parts):
        raise ValueError(
            f"scores and statistics must all be ({s.shape[0] if s.ndim else '?'},), "
            f"got {s.shape} and {[p.shape for p in parts]}"
        )
    if not np.isfinite(s).all():
        raise ValueError(f"scores contains {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    me, se, mt, st = parts
    flat = int(np.count_nonzero(se <= 0) + np.count_nonzero(st <= 0))
    if flat:
        raise ValueError(
            f"{flat} cohort score distribution(s) have zero spread: the cohort is too small "
            "or made of identical embeddings (raise top_n or rebuild the cohort)"
        )
    return 0.5 * ((s - me) / se + (s - mt) / st)


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``a`` (U, D) and, for each input row, its index among them (N,)."""
    a = np.ascontiguousarray(a)
    view = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    return a[first], inverse.ravel()


def _side(
    emb: ArrayLike, index: ArrayLike | None, n: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    e = _float_matrix(emb, f"{name}_emb")
    if index is None:
        if e.shape[0] != n:
            raise ValueError(
                f"{name}_emb has {e.shape[0]} rows for {n} scores; pass {name}_index to map "
                "trials to rows of a per-utterance matrix"
            )
        return _unique_rows(e)
    idx = np.asarray(index)
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name}_index must be ({n},) integers, got {idx.shape} {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= e.shape[0]):
        raise ValueError(f"{name}_index points outside the {e.shape[0]} rows of {name}_emb")
    return e, idx.astype(np.int64, copy=False)


def asnorm(
    scores: ArrayLike,
    enroll_emb: ArrayLike,
    test_emb: ArrayLike,
    cohort: ArrayLike,
    top_n: int | None = 100,
    *,
    enroll_index: ArrayLike | None = None,
    test_index: ArrayLike | None = None,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Adaptive symmetric score normalisation of N trial scores.

    Args:
        scores: (N,) raw trial scores (cosine).
        enroll_emb: (N, D) enrollment embedding of each trial, or (E, D) distinct enrollment
            embeddings with ``enroll_index`` (N,) giving each trial's row.
        test_emb: (N, D) or (T, D) with ``test_index``, likewise. Passing the same array
            object for both sides (with indices) computes its statistics once.
        cohort: (C, D) imposter cohort, e.g. from :func:`make_cohort`.
        top_n: cohort scores kept per side; None uses the whole cohort (plain S-norm).
        chunk_size: rows scored against the cohort at once (memory ~ chunk_size * C floats).

    Returns:
        (N,) normalised scores, float64.

    Without indices, identical rows are found and scored against the cohort only once.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    n = s.shape[0]
    shared = enroll_index is not None and test_index is not None and enroll_emb is test_emb
    e_rows, e_idx = _side(enroll_emb, enroll_index, n, "enroll")
    t_rows, t_idx = _side(test_emb, test_index, n, "test")
    me, se = cohort_stats(e_rows, cohort, top_n, chunk_size)
    mt, st = (me, se) if shared else cohort_stats(t_rows, cohort, top_n, chunk_size)
    logger.debug(
        "AS-Norm: %d trials, %d + %d distinct utterances, top_n=%s",
        n,
        len(me),
        0 if shared else len(mt),
        top_n,
    )
    return asnorm_from_stats(s, me[e_idx], se[e_idx], mt[t_idx], st[t_idx])


def trial_stats(
    emb: EmbeddingSet,
    enroll_ids: Sequence[str],
    test_ids: Sequence[str],
    cohort: ArrayLike,
    top_n: int | None = 100,
    cohort_speakers: ArrayLike | None = None,
    metric: Literal["cosine", "dot"] = "cosine",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cohort statistics of both sides of N trials, computed once per distinct utterance.

    ``asnorm_from_stats(scores, *trial_stats(...))`` is AS-Norm (S-norm for ``top_n=None``);
    the means are the imposter-mean quality measure.

    Args:
        emb: embeddings of every utterance the trials name (``KeyError`` listing missing ids).
        enroll_ids, test_ids: N trial ids.
        cohort: (C, D) cohort.
        top_n: as in :func:`asnorm`.
        cohort_speakers: (C,) speaker of each cohort row; an utterance's own speaker (from its
            ``speaker/...`` id) is then left out of its cohort.
        metric: as in :func:`cohort_stats`.

    Returns:
        ``(mean_enroll, std_enroll, mean_test, std_test)``, each (N,) float64.
    """
    if len(test_ids) != len(enroll_ids):
        raise ValueError(f"{len(enroll_ids)} enroll ids but {len(test_ids)} test ids")
    used = list(dict.fromkeys([*enroll_ids, *test_ids]))
    sub = emb.embeddings[emb.index(used)]
    spk = None if cohort_speakers is None else speakers_of_ids(used)
    mean, std = cohort_stats(
        sub, cohort, top_n, metric=metric, speakers=spk, cohort_speakers=cohort_speakers
    )
    pos = {u: i for i, u in enumerate(used)}
    e = np.fromiter((pos[u] for u in enroll_ids), np.int64, len(enroll_ids))
    t = np.fromiter((pos[u] for u in test_ids), np.int64, len(test_ids))
    logger.debug("cohort statistics of %d trials, %d distinct utterances", len(e), len(used))
    return mean[e], std[e], mean[t], std[t]


def make_cohort(
    emb: ArrayLike,
    speakers: ArrayLike,
    per: Literal["speaker", "utterance"] = "speaker",
) -> np.ndarray:
    """Imposter cohort from labelled training embeddings.

    Args:
        emb: (N, D) training embeddings.
        speakers: (N,) speaker labels (str or int).
        per: ``"speaker"``: one entry per speaker, the mean of its length-normalised
            embeddings (IDLab VoxSRC-20), rows in sorted speaker order; ``"utterance"``:
            every length-normalised embedding.

    Returns:
        (C, D) cohort, C = number of speakers or N.
    """
    e = _float_matrix(emb, "emb")
    spk = np.asarray(speakers)
    if spk.shape != (e.shape[0],):
        raise ValueError(f"speakers must be ({e.shape[0]},), got shape {spk.shape}")
    if per == "utterance":
        return length_normalize(e)
    if per != "speaker":
        raise ValueError(f"per must be 'speaker' or 'utterance', got {per!r}")
    return speaker_means(e, spk)[1]
