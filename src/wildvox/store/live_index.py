"""A search index that follows a changing set of speaker embeddings without full rebuilds.

:class:`LiveIndex` is synchronised with the store's speaker matrix: ``sync(speaker_ids, names,
matrix)``. It finds the rows that are new or changed since the last sync and the speakers that
are gone. Exact search is simply rebuilt (a copy of the matrix). An approximate index (an
HNSW build costs ~60 CPU-seconds at 100k speakers) is updated in place instead: changed
and removed speakers are tombstoned, changed and new ones are added under fresh slot ids, and
the index is rebuilt only when tombstones exceed ``rebuild_fraction`` of it, or when the size
crosses ``approx_threshold``.

    >>> import numpy as np
    >>> live = LiveIndex(dim=2, approx_threshold=10)
    >>> live.sync(np.array([1, 2]), ["ann", "bob"], np.eye(2, dtype=np.float32))
    >>> live.search(np.array([0.1, 1.0], np.float32), k=1)  # doctest: +ELLIPSIS
    [('bob', 0.995...)]
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from wildvox.store.search import (
    ApproxIndex,
    FloatArray,
    IdArray,
    VectorIndex,
    build_index,
    faiss_available,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeakerMatrix:
    """The store's pooled speaker embeddings at one change-counter ``generation``."""

    generation: int
    sids: IdArray  # (S,) speaker ids, ascending
    names: list[str]  # (S)
    stamps: npt.NDArray[np.float64]  # (S,) ``speakers.updated`` when read
    matrix: FloatArray  # (S, D) unit rows, read-only


def stale_speakers(
    old: SpeakerMatrix | None, sids: IdArray, stamps: npt.NDArray[np.float64]
) -> IdArray:
    """Speaker ids among ``sids`` whose row in ``old`` is missing or has another stamp."""
    if old is None or old.sids.size == 0:
        return sids.copy()
    pos = np.minimum(np.searchsorted(old.sids, sids), old.sids.size - 1)
    return sids[(old.sids[pos] != sids) | (old.stamps[pos] != stamps)]


def merge_matrix(
    old: SpeakerMatrix | None,
    generation: int,
    sids: IdArray,
    names: list[str],
    stamps: npt.NDArray[np.float64],
    pooled_ids: IdArray,
    pooled: FloatArray,
) -> SpeakerMatrix:
    """New :class:`SpeakerMatrix` for speakers ``sids`` (ascending) with ``names``/``stamps``.

    Rows come from ``pooled`` ``(P, D)`` for ``pooled_ids`` (freshly read), else from ``old``
    where the stamp is unchanged. Speakers with neither (no utterances) are left out.
    """
    dim = pooled.shape[1]
    mat = np.empty((sids.size, dim), dtype=np.float32)
    has = np.zeros(sids.size, dtype=bool)
    if old is not None and old.sids.size:
        pos = np.minimum(np.searchsorted(old.sids, sids), old.sids.size - 1)
        has = (old.sids[pos] == sids) & (old.stamps[pos] == stamps)
        mat[has] = old.matrix[pos[has]]
    at = np.searchsorted(sids, pooled_ids)
    mat[at], has[at] = pooled, True
    mat = mat[has]
    mat.flags.writeable = False
    kept = [n for n, h in zip(names, has, strict=True) if h]
    return SpeakerMatrix(generation, sids[has], kept, stamps[has], mat)


class LiveIndex:
    """Top-k cosine search over speakers, kept in step with a changing matrix.

    Args:
        dim: embedding size.
        approx_threshold: from this many speakers on, use :class:`ApproxIndex` (if faiss is
            installed), below it :class:`~wildvox.store.search.ExactIndex`.
        num_threads: OpenMP threads for the approximate index (``None``: faiss default).
        rebuild_fraction: rebuild the approximate index when tombstones exceed this fraction
            of the speakers.
        method: the approximate index, ``"hnsw"`` or ``"ivf_flat"`` (see :class:`ApproxIndex`).
    """

    def __init__(
        self,
        dim: int,
        approx_threshold: int = 50_000,
        num_threads: int | None = None,
        rebuild_fraction: float = 0.2,
        method: Literal["hnsw", "ivf_flat"] = "ivf_flat",
    ) -> None:
        self.dim = dim
        self.method: Literal["hnsw", "ivf_flat"] = method
        self.approx_threshold = approx_threshold
        self.num_threads = num_threads
        self.rebuild_fraction = rebuild_fraction
        self._index: VectorIndex | None = None
        self._sids: IdArray = np.zeros(0, dtype=np.int64)  # speaker ids, sorted
        self._rows: FloatArray = np.zeros((0, dim), dtype=np.float32)  # their embeddings
        self._names: list[str] = []  # their names
        self._slot_of_sid: dict[int, int] = {}
        self._slot_names: list[str] = []  # name of every slot ever added; dead slots stay
        self.last_sync: dict[str, float] = {}

    @property
    def index(self) -> VectorIndex | None:
        """The underlying vector index (``None`` before the first sync)."""
        return self._index

    def __len__(self) -> int:
        return int(self._sids.size)

    def _rebuild(self, sids: IdArray, names: list[str], matrix: FloatArray) -> None:
        slots = np.arange(sids.size, dtype=np.int64)
        self._index = build_index(
            matrix, slots, self.approx_threshold, self.num_threads, method=self.method
        )
        self._slot_of_sid = {int(s): i for i, s in enumerate(sids)}
        self._slot_names = list(names)

    def _wants_approx(self, n: int) -> bool:
        return n >= self.approx_threshold and faiss_available()

    def sync(self, speaker_ids: npt.ArrayLike, names: list[str], matrix: FloatArray) -> None:
        """Bring the index to ``matrix`` ``(S, D)`` of speakers ``speaker_ids`` ``(S,)``.

        ``speaker_ids`` must be sorted and unique; ``names`` gives each row's speaker name.
        Timing and counts of the update are kept in :attr:`last_sync`.
        """
        sids = np.asarray(speaker_ids, dtype=np.int64)
        if sids.shape != (len(names),) or matrix.shape != (len(names), self.dim):
            raise ValueError(
                f"need speaker_ids (S,), names (S) and matrix (S, {self.dim}); got "
                f"{sids.shape}, {len(names)}, {matrix.shape}"
            )
        if sids.size > 1 and not (np.diff(sids) > 0).all():
            raise ValueError("speaker_ids must be sorted and unique")
        t0 = time.perf_counter()
        if self._sids.size:
            pos = np.minimum(np.searchsorted(self._sids, sids), self._sids.size - 1)
            existed = self._sids[pos] == sids
        else:
            pos, existed = np.zeros(sids.size, dtype=np.intp), np.zeros(sids.size, dtype=bool)
        same = existed.copy()
        if existed.any():
            rows = np.flatnonzero(existed)
            same[rows] = (self._rows[pos[rows]] == matrix[rows]).all(axis=1)
            same[rows] &= [self._names[p] == names[r] for p, r in zip(pos[rows], rows, strict=True)]
        gone = np.setdiff1d(self._sids, sids, assume_unique=True)
        dead = [*(int(s) for s in gone), *(int(s) for s in sids[existed & ~same])]
        index = self._index
        rebuild = (
            not isinstance(index, ApproxIndex)
            or self._wants_approx(sids.size) != isinstance(index, ApproxIndex)
            or index.num_removed + len(dead) > self.rebuild_fraction * max(sids.size, 1)
        )
        if rebuild:
            self._rebuild(sids, names, matrix)
        elif index is not None:
            if dead:
                index.remove(np.array([self._slot_of_sid.pop(s) for s in dead], dtype=np.int64))
            fresh = np.flatnonzero(~same)
            slots = np.arange(len(self._slot_names), len(self._slot_names) + fresh.size)
            index.add(slots, matrix[fresh])
            for slot, row in zip(slots, fresh, strict=True):
                self._slot_of_sid[int(sids[row])] = int(slot)
                self._slot_names.append(names[row])
        self._sids, self._rows, self._names = sids, matrix, list(names)
        self.last_sync = {
            "seconds": time.perf_counter() - t0,
            "rebuilt": float(rebuild),
            "changed": float((~same).sum()),
            "removed": float(gone.size),
        }
        logger.debug("index sync over %d speakers: %s", sids.size, self.last_sync)

    def search(self, query: npt.ArrayLike, k: int) -> list[tuple[str, float]]:
        """``[(name, cosine)]`` of the ``k`` speakers closest to ``query`` ``(D,)``, best first."""
        if self._index is None or len(self._index) == 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(1, self.dim)
        scores, slots = self._index.search(q, k)
        return [
            (self._slot_names[int(i)], float(s))
            for s, i in zip(scores[0], slots[0], strict=True)
            if i >= 0
        ]
