"""Scoring back-ends: cosine, AS-Norm, PLDA, calibration, quality measures and fusion.

Each step is a pure function (or a small fitted object) on arrays; :mod:`.embeddings` holds the
thin file wrappers.
"""

from wildvox.scoring.asnorm import asnorm, asnorm_trials, cohort_stats, make_cohort, snorm
from wildvox.scoring.cosine import cosine_score_pairs, enroll_mean, length_normalize, score_trials
from wildvox.scoring.embeddings import (
    EmbeddingFileError,
    EmbeddingSet,
    load_embeddings,
    save_embeddings,
)

__all__ = [
    "EmbeddingFileError",
    "EmbeddingSet",
    "asnorm",
    "asnorm_trials",
    "cohort_stats",
    "cosine_score_pairs",
    "enroll_mean",
    "length_normalize",
    "load_embeddings",
    "make_cohort",
    "save_embeddings",
    "score_trials",
    "snorm",
]
