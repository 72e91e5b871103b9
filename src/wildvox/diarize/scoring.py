"""Diarization error rate (``pyannote.metrics``) and speaker-naming accuracy.

The collar follows the NIST convention: ``collar=0.25`` forgives 0.25 s on each side of every
reference boundary (pyannote's ``collar`` is the total width, so it is passed as 0.5).
Overlapped reference speech is scored (``skip_overlap=False``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wildvox.diarize.rttm import Turn, to_annotation
from wildvox.registry import optional_import

__all__ = ["DerResult", "NamingResult", "der", "naming_accuracy"]


@dataclass(frozen=True)
class DerResult:
    """DER and its parts, in seconds of scored reference speech ``total``."""

    der: float
    missed: float
    false_alarm: float
    confusion: float
    total: float


def der(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = 0.0) -> DerResult:
    """Diarization error rate of ``hypothesis`` against ``reference`` (optimal label mapping),
    forgiving ``collar`` seconds on each side of reference boundaries."""
    metrics = optional_import("pyannote.metrics.diarization", "diarize", "DER")
    metric = metrics.DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
    ref, hyp = to_annotation(reference, "m"), to_annotation(hypothesis, "m")
    parts = metric(ref, hyp, uem=_uem(reference, hypothesis), detailed=True)
    return DerResult(
        float(parts["diarization error rate"]),
        float(parts["missed detection"]),
        float(parts["false alarm"]),
        float(parts["confusion"]),
        float(parts["total"]),
    )


def _uem(*groups: Sequence[Turn]) -> Any:
    """The evaluated span: from the earliest start to the latest end of any turn."""
    core = optional_import("pyannote.core", "diarize", "DER")
    turns = [t for g in groups for t in g]
    if not turns:
        return core.Timeline([core.Segment(0.0, 0.0)])
    return core.Timeline([core.Segment(min(t.start for t in turns), max(t.end for t in turns))])


@dataclass(frozen=True)
class NamingResult:
    """Reference speakers correctly labelled, out of ``enrolled`` and ``unenrolled`` ones."""

    enrolled: int
    enrolled_named: int
    unenrolled: int
    unenrolled_unknown: int

    @property
    def accuracy(self) -> float:
        total = self.enrolled + self.unenrolled
        return (self.enrolled_named + self.unenrolled_unknown) / total if total else float("nan")


def naming_accuracy(
    reference: Sequence[Turn], hypothesis: Sequence[Turn], enrolled: Iterable[str]
) -> NamingResult:
    """How many reference speakers got the right label.

    Reference and hypothesis labels are paired one to one as DER pairs them (the mapping that
    maximises overlapping time). An enrolled reference speaker is right when its label is its
    own name; one not enrolled is right when its label is an ``unknown-N``; a speaker left
    without a label is wrong.
    """
    metrics = optional_import("pyannote.metrics.diarization", "diarize", "naming accuracy")
    ref, hyp = to_annotation(reference, "m"), to_annotation(hypothesis, "m")
    uem = _uem(reference, hypothesis)
    mapping = metrics.DiarizationErrorRate().optimal_mapping(ref, hyp, uem=uem)  # hyp -> ref
    given = {r: h for h, r in mapping.items()}
    names = set(enrolled)
    counts = [0, 0, 0, 0]
    for spk in sorted({t.speaker for t in reference}):
        label = given.get(spk)
        if spk in names:
            counts[0] += 1
            counts[1] += label == spk
        else:
            counts[2] += 1
            counts[3] += label is not None and label.startswith("unknown-")
    return NamingResult(*counts)
