"""Scoring back-ends: cosine, AS-Norm, PLDA, calibration, quality measures and fusion.

Each step is a pure function (or a small fitted object) on arrays; :mod:`.embeddings` and
:mod:`.score_file` hold the thin file wrappers.
"""

from wildvox.scoring.asnorm import asnorm, asnorm_from_stats, cohort_stats, make_cohort, trial_stats
from wildvox.scoring.calibration import Calibration, LogisticCalibrator, trial_features
from wildvox.scoring.calibration_trials import (
    CalibrationTrials,
    build_calibration_trials,
    fit_model_calibration,
)
from wildvox.scoring.cohort import ScoreCohort
from wildvox.scoring.cosine import (
    cosine_score_pairs,
    enroll_mean,
    length_normalize,
    score_trials,
    speaker_means,
)
from wildvox.scoring.embeddings import (
    EmbeddingFileError,
    EmbeddingSet,
    load_embeddings,
    save_embeddings,
)
from wildvox.scoring.fusion import LogisticFusion, average_fusion
from wildvox.scoring.plda import PLDA, NotFittedError
from wildvox.scoring.quality import duration_quality, imposter_mean_quality
from wildvox.scoring.score_file import ScoreFile, ScoreFileError, read_score_file, write_score_file

__all__ = [
    "PLDA",
    "Calibration",
    "CalibrationTrials",
    "EmbeddingFileError",
    "EmbeddingSet",
    "LogisticCalibrator",
    "LogisticFusion",
    "NotFittedError",
    "ScoreCohort",
    "ScoreFile",
    "ScoreFileError",
    "asnorm",
    "asnorm_from_stats",
    "average_fusion",
    "build_calibration_trials",
    "cohort_stats",
    "cosine_score_pairs",
    "duration_quality",
    "enroll_mean",
    "fit_model_calibration",
    "imposter_mean_quality",
    "length_normalize",
    "load_embeddings",
    "make_cohort",
    "read_score_file",
    "save_embeddings",
    "score_trials",
    "speaker_means",
    "trial_features",
    "trial_stats",
    "write_score_file",
]
