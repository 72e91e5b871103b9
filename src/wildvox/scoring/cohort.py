"""The score normalisation a model ships with: AS-Norm against a cohort of its training speakers.

``cohort.safetensors`` in an exported model folder holds ``cohort`` (C, D) float32 (per-speaker
means of length-normalised training embeddings, :func:`wildvox.scoring.asnorm.make_cohort`) and
``top_n`` in its metadata. When it is there, every score the product computes (verify,
identify, the demo) is the AS-normalised cosine, and the model's calibration was fitted on
such scores; without it, scores are plain cosine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from wildvox.data.files import atomic_path
from wildvox.scoring.asnorm import asnorm_from_stats, cohort_stats
from wildvox.scoring.cosine import cosine_score_pairs, length_normalize

COHORT_FILE = "cohort.safetensors"


@dataclass(frozen=True)
class ScoreCohort:
    """An AS-Norm cohort ``embeddings (C, D)`` (unit rows) and the ``top_n`` scores kept."""

    embeddings: np.ndarray
    top_n: int = 100

    def __post_init__(self) -> None:
        e = self.embeddings
        if e.ndim != 2 or len(e) < 2 or not np.isfinite(e).all():
            raise ValueError(f"a cohort needs (C >= 2, D) finite embeddings, got {e.shape}")
        if not 1 <= self.top_n <= len(e):
            raise ValueError(f"top_n must be in [1, {len(e)}], got {self.top_n}")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def digest(self) -> str:
        """Short hash of the cohort and ``top_n``: scores are comparable only under one."""
        h = hashlib.sha256(np.ascontiguousarray(self.embeddings, dtype=np.float32).tobytes())
        h.update(str(self.top_n).encode())
        return h.hexdigest()[:16]

    def stats(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (N,) of each embedding's ``top_n`` highest cohort cosines."""
        return cohort_stats(np.atleast_2d(emb), self.embeddings, self.top_n)

    def normalize(self, scores: np.ndarray, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """AS-Norm of trial ``scores`` (N,) whose sides are ``emb_a`` / ``emb_b`` (N, D)."""
        ma, sa = self.stats(emb_a)
        mb, sb = self.stats(emb_b)
        return asnorm_from_stats(scores, ma, sa, mb, sb)

    def normalize_matrix(
        self, scores: np.ndarray, rows: np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        """AS-Norm of a score matrix (R, K) between embeddings ``rows`` (R, D) and ``cols``
        (K, D) (each side's cohort statistics are computed once)."""
        mr, sr = self.stats(rows)
        mc, sc = self.stats(cols)
        s = np.asarray(scores, dtype=np.float64)
        r, k = s.shape
        flat = asnorm_from_stats(
            s.ravel(), np.repeat(mr, k), np.repeat(sr, k), np.tile(mc, r), np.tile(sc, r)
        )
        return flat.reshape(r, k)

    def score_pairs(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """AS-normalised cosine scores (N,) of trials between ``emb_a`` and ``emb_b`` (N, D)."""
        a, b = np.atleast_2d(emb_a), np.atleast_2d(emb_b)
        return self.normalize(cosine_score_pairs(a, b).astype(np.float64), a, b)

    def score_matrix(self, queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
        """AS-normalised cosine scores (Q, R) of queries (Q, D) against references (R, D)."""
        q, r = length_normalize(np.atleast_2d(queries)), length_normalize(np.atleast_2d(refs))
        return self.normalize_matrix((q @ r.T).astype(np.float64), q, r)

    def save(self, model_dir: Path) -> Path:
        """Write ``cohort.safetensors`` into a model folder (atomically, world-readable)."""
        path = Path(model_dir) / COHORT_FILE
        tensors = {"cohort": np.ascontiguousarray(self.embeddings, dtype=np.float32)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"top_n": str(self.top_n)})
        return path

    @classmethod
    def from_embeddings(cls, cohort: np.ndarray, top_n: int = 100) -> ScoreCohort:
        """A cohort from (C, D) embeddings (length-normalised here); ``top_n`` capped at C."""
        unit = length_normalize(np.asarray(cohort, dtype=np.float32))
        return cls(unit.astype(np.float32), min(top_n, len(unit)))

    @classmethod
    def load(cls, model_dir: Path) -> ScoreCohort | None:
        """The model folder's cohort, or None when it has none.

        Raises:
            ValueError: the file is there but unreadable or inconsistent.
        """
        path = Path(model_dir) / COHORT_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                cohort = np.asarray(f.get_tensor("cohort"), dtype=np.float32)
            return cls(cohort, int(meta["top_n"]))
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid cohort file ({exc})") from exc


def score_name(cohort: ScoreCohort | None) -> str:
    """What a model with this cohort scores: ``"cosine"``, or ``"as-norm:<digest>"``; a
    calibration records it and is refused under any other scoring."""
    return "cosine" if cohort is None else f"as-norm:{cohort.digest}"
