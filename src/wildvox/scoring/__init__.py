"""Scoring back-ends: cosine, AS-Norm, PLDA, calibration, quality measures and fusion.

Each step is a pure function (or a small fitted object) on arrays; :mod:`.embeddings` holds the
thin file wrappers.
"""

from wildvox.scoring.asnorm import asnorm, asnorm_trials, cohort_stats, make_cohort, snorm
from wildvox.scoring.calibration import (
    CalibrationTrials,
    LogisticCalibrator,
    build_calibration_trials,
)
from wildvox.scoring.cosine import cosine_score_pairs, enroll_mean, length_normalize, score_trials
from wildvox.scoring.embeddings import (
    EmbeddingFileError,
    EmbeddingSet,
    load_embeddings,
    save_embeddings,
)
from wildvox.scoring.fusion import LogisticFusion, average_fusion
from wildvox.scoring.plda import PLDA, NotFittedError
from wildvox.scoring.quality import (
    duration_quality,
    imposter_mean_quality,
    speech_duration,
)

__all__ = [
    "PLDA",
    "CalibrationTrials",
    "EmbeddingFileError",
    "EmbeddingSet",
    "LogisticCalibrator",
    "LogisticFusion",
    "NotFittedError",
    "asnorm",
    "asnorm_trials",
    "average_fusion",
    "build_calibration_trials",
    "cohort_stats",
    "cosine_score_pairs",
    "duration_quality",
    "enroll_mean",
    "imposter_mean_quality",
    "length_normalize",
    "load_embeddings",
    "make_cohort",
    "save_embeddings",
    "score_trials",
    "snorm",
    "speech_duration",
]
