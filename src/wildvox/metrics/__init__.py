"""Verification and identification metrics on score arrays."""

from wildvox.metrics.identification import (
    confusion_matrix,
    identification_report,
    macro_f1,
    top_k_accuracy,
)
from wildvox.metrics.verification import (
    compute_actual_dcf,
    compute_cllr,
    compute_eer,
    compute_min_cllr,
    compute_min_dcf,
    det_curve,
    verification_report,
)

__all__ = [
    "compute_actual_dcf",
    "compute_cllr",
    "compute_eer",
    "compute_min_cllr",
    "compute_min_dcf",
    "confusion_matrix",
    "det_curve",
    "identification_report",
    "macro_f1",
    "top_k_accuracy",
    "verification_report",
]
