"""Embedding files: ``.npz`` with ``ids`` (str), ``embeddings`` (N, D) float32, ``durations``.

``ids`` are utterance ids such as the VoxCeleb relative path ``"id10001/1zcIwhmdeo4/00001.wav"``;
``durations`` (optional) are utterance lengths in seconds.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "emb.npz"
>>> save_embeddings(path, ["a/x/1.wav", "b/y/2.wav"], np.eye(2, 3, dtype=np.float32))
>>> emb = load_embeddings(path)
>>> emb.index(["b/y/2.wav"]).tolist()
[1]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from wildvox.data.files import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["EmbeddingFileError", "EmbeddingSet", "load_embeddings", "save_embeddings"]


class EmbeddingFileError(ValueError):
    """An embedding file that is missing, unreadable or malformed."""


def _check_arrays(
    ids: Sequence[str], embeddings: np.ndarray, durations: np.ndarray | None, where: str
) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"{where}: embeddings must be (N, D), got shape {embeddings.shape}")
    n = embeddings.shape[0]
    if len(ids) != n:
        raise ValueError(f"{where}: {len(ids)} ids for {n} embeddings")
    if embeddings.shape[1] == 0:
        raise ValueError(f"{where}: embeddings have dimension 0")
    bad_rows = ~np.isfinite(embeddings).all(axis=1)
    if bad_rows.any():
        first = [ids[i] for i in np.flatnonzero(bad_rows)[:3]]
        raise ValueError(
            f"{where}: {int(bad_rows.sum())} embedding(s) contain NaN/inf, e.g. {first}"
        )
    if durations is not None:
        if durations.shape != (n,):
            raise ValueError(f"{where}: durations must be ({n},), got shape {durations.shape}")
        if not np.isfinite(durations).all() or (durations < 0).any():
            raise ValueError(f"{where}: durations must be finite and >= 0 seconds")
    if len(set(ids)) != n:
        dups = [i for i, c in Counter(ids).items() if c > 1]
        raise ValueError(f"{where}: {len(dups)} duplicate id(s), e.g. {dups[:3]}")


@dataclass
class EmbeddingSet:
    """Utterance embeddings keyed by id.

    Attributes:
        ids: N utterance ids, unique.
        embeddings: (N, D) float array.
        durations: (N,) seconds, or None.
    """

    ids: list[str]
    embeddings: np.ndarray
    durations: np.ndarray | None = None
    _pos: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        self.embeddings = np.asarray(self.embeddings)
        if self.durations is not None:
            self.durations = np.asarray(self.durations, dtype=np.float32)
        _check_arrays(self.ids, self.embeddings, self.durations, "EmbeddingSet")
        self._pos = {u: i for i, u in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.embeddings.shape[1])

    def index(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each id, (M,) int64; ``KeyError`` listing a few unknown ids."""
        pos = self._pos
        try:
            return np.fromiter((pos[i] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError:
            unknown = [str(i) for i in dict.fromkeys(ids) if i not in pos]
            raise KeyError(
                f"{len(unknown)} id(s) have no embedding, e.g. {unknown[:5]} "
                f"(the set holds {len(pos)} ids)"
            ) from None

    def subset(self, ids: Sequence[str]) -> EmbeddingSet:
        """The embeddings of ``ids``, in that order."""
        rows = self.index(ids)
        dur = None if self.durations is None else self.durations[rows]
        return EmbeddingSet(list(ids), self.embeddings[rows], dur)


def save_embeddings(
    path: str | Path,
    ids: Sequence[str],
    embeddings: ArrayLike,
    durations: ArrayLike | None = None,
) -> None:
    """Write an embedding file atomically (temporary file in the same folder, then rename).

    Args:
        path: destination ``.npz``.
        ids: N unique utterance ids.
        embeddings: (N, D), stored as float32.
        durations: (N,) seconds, stored as float32, optional.
    """
    path = Path(path)
    emb = np.asarray(embeddings, dtype=np.float32)
    dur = None if durations is None else np.asarray(durations, dtype=np.float32)
    id_list = [str(i) for i in ids]
    _check_arrays(id_list, emb, dur, str(path))
    arrays: dict[str, np.ndarray] = {"ids": np.asarray(id_list, dtype=np.str_), "embeddings": emb}
    if dur is not None:
        arrays["durations"] = dur
    if path.is_dir():
        raise EmbeddingFileError(f"{path}: is a folder; give a file name such as emb.npz")
    if path.parent.exists() and not path.parent.is_dir():
        raise EmbeddingFileError(f"{path}: its parent {path.parent} is a file, not a folder")
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    logger.info("wrote %d embeddings (%d-d) to %s", emb.shape[0], emb.shape[1], path)


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read and validate an embedding file written by :func:`save_embeddings`.

    Raises:
        EmbeddingFileError: (a ``ValueError``) naming the file when it is missing, not an
            ``.npz`` archive, lacks ``ids``/``embeddings``, or holds mismatched shapes,
            non-finite values or duplicate ids.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            missing = {"ids", "embeddings"} - names
            if missing:
                raise EmbeddingFileError(
                    f"{path}: not an embedding file, missing array(s) {sorted(missing)}"
                )
            ids = z["ids"]
            emb = z["embeddings"]
            dur = z["durations"] if "durations" in names else None
    except FileNotFoundError:
        raise EmbeddingFileError(f"{path}: embedding file not found") from None
    except EmbeddingFileError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise EmbeddingFileError(f"{path}: cannot read embedding file ({exc})") from exc
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise EmbeddingFileError(f"{path}: 'ids' must be a 1-D string array, got {ids.dtype}")
    if emb.dtype.kind != "f":
        raise EmbeddingFileError(f"{path}: 'embeddings' must be float, got {emb.dtype}")
    try:
        return EmbeddingSet(ids.tolist(), emb.astype(np.float32, copy=False), dur)
    except ValueError as exc:
        raise EmbeddingFileError(str(exc).replace("EmbeddingSet", str(path), 1)) from None
