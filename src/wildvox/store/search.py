"""Top-k cosine search over speaker embeddings: exact (NumPy) and approximate (faiss).

Both indexes share one interface (:class:`VectorIndex`): ``add(ids, vectors)`` then
``search(queries, k) -> (scores, ids)``. Vectors are L2-normalised on the way in (unless
``normalize=False``), so the inner product they rank by is the cosine similarity.

    >>> import numpy as np
    >>> index = ExactIndex(dim=3)
    >>> index.add(np.array([10, 11]), np.array([[1.0, 0, 0], [0, 2.0, 0]], dtype=np.float32))
    >>> scores, ids = index.search(np.array([[0.0, 1.0, 0.1]], dtype=np.float32), k=1)
    >>> ids.tolist(), round(float(scores[0, 0]), 3)
    ([[11]], 0.995)

:class:`ApproxIndex` wraps a faiss IVF-flat index (default) or an HNSW graph on the inner
product. :func:`build_index` picks exact below a size threshold and approximate above it,
falling back to exact, with a warning, when faiss is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from wildvox.registry import Registry
from wildvox.scoring.cosine import length_normalize

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

# Largest score matrix (queries x vectors) ExactIndex materialises at once, in elements.
_EXACT_BLOCK = 1 << 24


class VectorIndex(Protocol):
    """What the speaker store needs from a vector index."""

    dim: int

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add ``vectors`` ``(N, dim)`` under integer ``ids`` ``(N,)``."""
        ...

    def remove(self, ids: npt.ArrayLike) -> None:
        """Stop returning ``ids``; an id, once removed, must not be added again."""
        ...

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[FloatArray, IdArray]:
        """Best ``k`` matches of each query ``(Q, dim)``: scores and ids, both ``(Q, k)``."""
        ...

    def __len__(self) -> int: ...


INDEXES: Registry[VectorIndex] = Registry("vector index")


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package (``faiss-cpu``) can be imported."""
    return importlib.util.find_spec("faiss") is not None


def _as_matrix(x: npt.ArrayLike, dim: int, what: str) -> FloatArray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (N, {dim}), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{what} must be floating point, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return out


def _as_ids(ids: npt.ArrayLike, n: int) -> IdArray:
    arr = np.asarray(ids)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be {n} integers, got shape {arr.shape} dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_top_k(k: object, what: str = "top_k") -> int:
    """``k`` as an ``int`` when it is an integer >= 1, else ``ValueError`` naming ``what``.

    The one check of a requested result count, for the store, its indexes and the API.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {k!r}")
    return int(k)


def _unit_rows(x: FloatArray, what: str) -> FloatArray:
    """Rows of ``x`` ``(N, D)`` at unit L2 norm; a zero row has no direction: ``ValueError``."""
    if (np.linalg.norm(x, axis=1) == 0).any():
        raise ValueError(f"{what} contain an all-zero row, which has no direction")
    return length_normalize(x).astype(np.float32, copy=False)


def top_k(scores: FloatArray, k: int) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Best ``k`` columns per row of ``scores`` ``(Q, N)``, best first.

    Uses ``argpartition`` (O(N) per row) and sorts only the ``k`` survivors. Returns
    ``(values (Q, k'), columns (Q, k'))`` with ``k' = min(k, N)``.
    """
    k = check_top_k(k, "k")
    n = scores.shape[1]
    k = min(k, n)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(part_scores, order, axis=1), cols


@INDEXES.register("exact")
class ExactIndex:
    """Brute-force inner-product search: one matrix product per block of queries.

    Memory is ``4 * N * dim`` bytes. Queries are processed in blocks so that the
    ``(Q, N)`` score matrix never exceeds 2**24 elements (64 MiB).
    """

    def __init__(self, dim: int, normalize: bool = True) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.normalize = normalize
        self._chunks: list[FloatArray] = []
        self._id_chunks: list[IdArray] = []
        self._vectors: FloatArray = np.zeros((0, dim), dtype=np.float32)
        self._ids: IdArray = np.zeros(0, dtype=np.int64)

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add ``vectors`` ``(N, dim)`` under ``ids`` ``(N,)`` (int64)."""
        vecs = _as_matrix(vectors, self.dim, "vectors")
        id_arr = _as_ids(ids, vecs.shape[0])
        self._chunks.append(_unit_rows(vecs, "vectors") if self.normalize else vecs.copy())
        self._id_chunks.append(id_arr.copy())

    def _consolidate(self) -> None:
        if self._chunks:
            self._vectors = np.concatenate([self._vectors, *self._chunks])
            self._ids = np.concatenate([self._ids, *self._id_chunks])
            self._chunks.clear()
            self._id_chunks.clear()

    def remove(self, ids: npt.ArrayLike) -> None:
        """Drop the vectors stored under ``ids`` (unknown ids are ignored)."""
        self._consolidate()
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        self._vectors, self._ids = self._vectors[keep], self._ids[keep]

    def __len__(self) -> int:
        return self._vectors.shape[0] + sum(c.shape[0] for c in self._chunks)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored vectors and ids."""
        self._consolidate()
        return int(self._vectors.nbytes + self._ids.nbytes)

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[FloatArray, IdArray]:
        """Exact top-``k`` by inner product (cosine when normalised).

        Args:
            queries: ``(Q, dim)`` float array.
            k: number of results; clipped to the index size.

        Returns:
            ``(scores (Q, k'), ids (Q, k'))`` best first, ``k' = min(k, len(self))``.
        """
        k = check_top_k(k, "k")
        q = _as_matrix(queries, self.dim, "queries")
        if self.normalize:
            q = _unit_rows(q, "queries")
        self._consolidate()
        n = self._vectors.shape[0]
        kk = min(k, n)
        out_s = np.empty((q.shape[0], kk), dtype=np.float32)
        out_i = np.empty((q.shape[0], kk), dtype=np.int64)
        if n == 0:
            return out_s, out_i
        block = max(1, _EXACT_BLOCK // n)
        for start in range(0, q.shape[0], block):
            qb = q[start : start + block]
            # A single query is a matrix-vector product, ~3x faster than a (1, D) x (D, N) gemm.
            scores = (self._vectors @ qb[0])[None] if len(qb) == 1 else qb @ self._vectors.T
            vals, cols = top_k(scores, kk)
            out_s[start : start + block] = vals
            out_i[start : start + block] = self._ids[cols]
        return out_s, out_i


@contextlib.contextmanager
def _omp_threads(faiss: Any, num_threads: int | None) -> Iterator[None]:
    """Temporarily set faiss' OpenMP thread count (process-wide), restoring it afterwards."""
    if num_threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(num_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@INDEXES.register("approx")
class ApproxIndex:
    """Approximate inner-product search with faiss (``faiss-cpu``).

    Args:
        dim: vector size.
        method: ``"ivf_flat"`` (k-means cells trained on the first ``add``; builds in
            seconds, 0.92 recall@1 at 1M in ``bench/results/store.md``) or ``"hnsw"`` (graph;
            fastest queries at 10k-100k but ~800 CPU-s to build at 1M, and lower recall there
            with the default ``ef_construction``).
        normalize: L2-normalise vectors and queries, making the score a cosine.
        hnsw_m: HNSW neighbours per node (memory ``~ 8 * hnsw_m`` bytes per vector on top of the
            ``4 * dim`` of the vectors).
        ef_construction: HNSW build beam width (build cost grows linearly with it).
        ef_search: HNSW query beam width; raised to ``k`` when smaller.
        nlist: IVF cell count; default ``sqrt(N)`` of the first ``add``.
        nprobe: IVF cells visited per query (search cost ~ ``nprobe / nlist * N``).
        num_threads: OpenMP threads used during ``add``/``search`` (``None``: faiss' setting).
        seed: seed of the IVF training sample and k-means.

    Raises:
        ImportError: faiss is not installed (use :func:`build_index` for a fallback).
    """

    def __init__(
        self,
        dim: int,
        method: Literal["hnsw", "ivf_flat"] = "ivf_flat",
        normalize: bool = True,
        hnsw_m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 256,
        nlist: int | None = None,
        nprobe: int = 128,
        num_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        try:
            import faiss
        except ImportError as err:  # pragma: no cover - exercised only without faiss
            raise ImportError(
                "ApproxIndex needs faiss: pip install faiss-cpu==1.15.1 "
                "(or use ExactIndex / build_index, which falls back to exact search)"
            ) from err
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if method not in ("hnsw", "ivf_flat"):
            raise ValueError(f"method must be 'hnsw' or 'ivf_flat', got {method!r}")
        self._faiss = faiss
        self.dim = dim
        self.method = method
        self.normalize = normalize
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.num_threads = num_threads
        self.seed = seed
        self._inner: Any = None
        self._index: Any = None
        self._removed: IdArray = np.zeros(0, dtype=np.int64)
        self._selector: tuple[Any, Any] | None = None  # (IDSelectorNot, its IDSelectorBatch)

    def _create(self, first: FloatArray) -> None:
        faiss = self._faiss
        if self.method == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
        else:
            n = first.shape[0]
            nlist = self.nlist or max(1, int(np.sqrt(n)))
            # k-means on at most 64 points per cell (faiss' minimum is 39): training cost
            # grows with nlist * sample, which would be 1e6 * 4e3 at 1M vectors otherwise.
            sample = first
            if n > 64 * nlist:
                pick = np.random.default_rng(self.seed).choice(n, 64 * nlist, replace=False)
                sample = first[np.sort(pick)]
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.cp.seed = self.seed
            inner.train(sample)
            self._quantizer = quantizer  # the IVF index does not own it
            logger.debug("trained IVF-flat: %d cells, %d vectors", nlist, sample.shape[0])
        self._inner = inner
        self._index = faiss.IndexIDMap(inner)

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add ``vectors`` ``(N, dim)`` under ``ids`` ``(N,)``; the first call trains IVF."""
        vecs = _as_matrix(vectors, self.dim, "vectors")
        id_arr = _as_ids(ids, vecs.shape[0])
        if vecs.shape[0] == 0:
            return
        if self.normalize:
            vecs = _unit_rows(vecs, "vectors")
        with _omp_threads(self._faiss, self.num_threads):
            if self._index is None:
                self._create(vecs)
            self._index.add_with_ids(vecs, id_arr)

    def remove(self, ids: npt.ArrayLike) -> None:
        """Hide ``ids`` from searches (tombstones: the graph keeps them for navigation).

        faiss HNSW cannot delete nodes; rebuild the index when :attr:`num_removed` grows large.
        """
        ids_arr = np.asarray(ids, dtype=np.int64).ravel()
        self._removed = np.union1d(self._removed, ids_arr)
        batch = self._faiss.IDSelectorBatch(self._removed)
        self._selector = (self._faiss.IDSelectorNot(batch), batch)

    @property
    def num_removed(self) -> int:
        """Number of tombstoned ids still stored in the index."""
        return int(self._removed.size)

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal) - self.num_removed

    @property
    def nbytes(self) -> int:
        """Size of the serialised faiss index in bytes (vectors, graph or lists, ids)."""
        if self._index is None:
            return 0
        return int(self._faiss.serialize_index(self._index).nbytes)

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[FloatArray, IdArray]:
        """Approximate top-``k`` by inner product.

        Returns ``(scores (Q, k'), ids (Q, k'))`` best first with ``k' = min(k, len(self))``;
        a slot the search could not fill (rare, e.g. IVF cells too few) has id ``-1`` and
        score ``-inf``.
        """
        k = check_top_k(k, "k")
        q = _as_matrix(queries, self.dim, "queries")
        if self.normalize:
            q = _unit_rows(q, "queries")
        kk = min(k, len(self))
        if kk == 0:
            return np.empty((q.shape[0], 0), np.float32), np.empty((q.shape[0], 0), np.int64)
        faiss = self._faiss
        sel = None if self._selector is None else self._selector[0]
        with _omp_threads(faiss, self.num_threads):
            if self.method == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, kk), sel=sel)
            else:
                nprobe = min(self.nprobe, self._inner.nlist)
                params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
            scores, ids = self._index.search(q, kk, params=params)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64, copy=False)


def build_index(
    vectors: npt.ArrayLike,
    ids: npt.ArrayLike | None = None,
    approx_threshold: int = 50_000,
    num_threads: int | None = None,
    method: Literal["hnsw", "ivf_flat"] = "ivf_flat",
) -> VectorIndex:
    """An index holding ``vectors`` ``(N, D)``: exact below ``approx_threshold`` rows, else
    :class:`ApproxIndex` with ``method``.

    When ``N >= approx_threshold`` but faiss is not importable, logs a warning and returns an
    :class:`ExactIndex`. ``ids`` default to ``0..N-1``.
    """
    vecs = np.asarray(vectors)
    if vecs.ndim != 2:
        raise ValueError(f"vectors must have shape (N, D), got {vecs.shape}")
    n, dim = vecs.shape
    id_arr = np.arange(n, dtype=np.int64) if ids is None else ids
    index: VectorIndex
    if n >= approx_threshold and faiss_available():
        index = ApproxIndex(dim, method=method, num_threads=num_threads)
    else:
        if n >= approx_threshold:
            logger.warning(
                "faiss is not installed: exact search over %d vectors "
                "(pip install faiss-cpu==1.15.1 for approximate search)",
                n,
            )
        index = ExactIndex(dim)
    index.add(id_arr, vecs)
    logger.debug("built %s over %d vectors of dim %d", type(index).__name__, n, dim)
    return index
