"""Who spoke when: VAD -> windowed embeddings -> clustering -> re-segmentation -> naming.

:func:`diarize` runs the whole chain on a recording (decoded block by block, so an hour-long
file stays in bounded memory). Each cluster is then scored against the enrolled speakers of the
model's store with the calibrated identification threshold of an operating point: clusters
matched to an enrolled speaker (one cluster per speaker at most) take its name, the others are
``unknown-1``, ``unknown-2``, ... in order of first appearance.

Overlapped speech is not detected: every frame of speech gets exactly one speaker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from wildvox.diarize.cluster import STOP_DISTANCE, cluster_windows, resegment
from wildvox.diarize.rttm import Turn
from wildvox.diarize.segments import Segments, embed_segments, speech_regions
from wildvox.scoring.calibration import Calibration
from wildvox.scoring.cosine import enroll_mean

if TYPE_CHECKING:
    from wildvox.api import SpeakerModel

__all__ = [
    "NAMING_POINT",
    "Diarization",
    "Match",
    "SpeakerLabel",
    "diarize",
    "diarize_segments",
    "name_clusters",
]

Audio = str | os.PathLike[str] | np.ndarray
#: default identification operating point for naming clusters. On 100 generated meetings
#: (bench/results/diarization.md) ``eer`` named 172/213 enrolled speakers but left only 8/187
#: others unknown (the best of 11 enrolled speakers passes a per-trial EER threshold); ``far=1%``
#: (open-set) named 166/213 and left 161/187 unknown: 81.8 % right against 45.0 %.
NAMING_POINT = "far=1%"


@dataclass(frozen=True)
class SpeakerLabel:
    """One cluster of a diarization.

    Attributes:
        label: the name shown in turns: an enrolled name or ``unknown-N``.
        enrolled: whether ``label`` is an enrolled speaker of the store.
        speech: seconds of speech given to this cluster.
        best: the closest enrolled speaker (None with an empty store or no naming).
        score, llr: the cluster's score and calibrated LLR against ``best``.
    """

    label: str
    enrolled: bool
    speech: float
    best: str | None = None
    score: float | None = None
    llr: float | None = None


@dataclass(frozen=True)
class Diarization:
    """The result of :func:`diarize`: turns in time order and one entry per cluster."""

    turns: list[Turn]
    speakers: list[SpeakerLabel]
    duration: float
    regions: list[tuple[float, float]]
    num_windows: int
    operating_point: str | None
    threshold: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``json.dumps`` (times in seconds)."""
        return {
            "duration": self.duration,
            "num_speakers": len(self.speakers),
            "num_windows": self.num_windows,
            "operating_point": self.operating_point,
            "identification_threshold": self.threshold,
            "speakers": [asdict(s) for s in self.speakers],
            "turns": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in self.turns],
            "speech_regions": [list(r) for r in self.regions],
        }


def _has_speakers(model: SpeakerModel) -> bool:
    """Whether the model's store exists (none is created here) and holds speakers."""
    return model.store_path.exists() and len(model.store()) > 0


def _calibration(model: SpeakerModel) -> Calibration:
    if model.calibration is None:
        raise ValueError(
            f"model {model.model_id} has no calibration: naming speakers needs its "
            "identification threshold (run `wildvox calibrate-model`, or diarize without naming)"
        )
    return model.calibration


@dataclass(frozen=True)
class Match:
    """A cluster against the store: ``name`` if accepted, its ``best`` speaker, score, LLR."""

    name: str | None
    best: str
    score: float
    llr: float


def name_clusters(
    model: SpeakerModel,
    embeddings: np.ndarray,
    durations: Sequence[float],
    operating_point: str = NAMING_POINT,
) -> tuple[list[Match], float]:
    """Match K cluster embeddings (K, D) of ``durations`` (K,) seconds of speech against the
    store: ``([Match, ...] (K,), threshold)``.

    Clusters and enrolled speakers are paired one to one to maximise the summed LLR (Hungarian
    assignment); a pair is kept when its LLR reaches the open-set identification threshold
    of ``operating_point`` for the store's size (``name`` None otherwise; ``best``, ``score``
    and ``llr`` are then those of the cluster's highest-LLR speaker).
    """
    cal = _calibration(model)
    cal.threshold(operating_point)  # validate the point
    names, matrix = model.store().matrix()
    k = embeddings.shape[0]
    if not names:
        raise ValueError(f"{model.store().path}: no enrolled speakers to name clusters after")
    enrolled = {r.name: r.total_duration for r in model.store().list_speakers()}
    scores = model.score_matrix(embeddings, matrix)  # (K, S)
    dur_ref = np.array([enrolled[n] for n in names], dtype=np.float64)
    llrs = np.stack(
        [cal.llr(scores[i], dur_ref, np.full(len(names), durations[i])) for i in range(k)]
    )
    thr = cal.identification_threshold(operating_point, len(names))
    rows, cols = linear_sum_assignment(-llrs)
    pick = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    out: list[Match] = []
    for i in range(k):
        j = pick.get(i, int(np.argmax(llrs[i])))
        named = i in pick and llrs[i, j] >= thr
        out.append(Match(names[j] if named else None, names[j], float(scores[i, j]),
                         float(llrs[i, j])))  # fmt: skip
    return out, float(thr)


def diarize_segments(
    model: SpeakerModel | None,
    segments: Segments,
    regions: Sequence[tuple[float, float]],
    num_speakers: int | None = None,
    threshold: float = STOP_DISTANCE,
    operating_point: str | None = NAMING_POINT,
    frame: float = 0.1,
) -> Diarization:
    """Cluster, re-segment and name windows already embedded (see :func:`diarize`).

    ``model`` None, ``operating_point`` None, or no store file (none is created): no naming,
    every cluster is ``unknown-N``.
    """
    if len(segments) == 0:
        return Diarization([], [], segments.duration, list(regions), 0, operating_point, None)
    labels = cluster_windows(segments.embeddings, num_speakers, threshold)
    raw = resegment(segments.starts, segments.ends, segments.embeddings, labels, regions, frame)
    k = int(labels.max()) + 1
    speech = np.zeros(k)
    for a, b, c in raw:
        speech[c] += b - a
    first = {c: i for i, (_, _, c) in reversed(list(enumerate(raw)))}
    order = sorted(range(k), key=lambda c: first.get(c, len(raw)))
    naming: list[Match | None] = [None] * k
    thr: float | None = None
    if model is not None and operating_point is not None and _has_speakers(model):
        embs = np.stack([enroll_mean(segments.embeddings[labels == c]) for c in range(k)])
        found, thr = name_clusters(model, embs.astype(np.float32), speech.tolist(), operating_point)
        naming = list(found)
    labels_of: dict[int, SpeakerLabel] = {}
    unknown = 0
    for c in order:
        m = naming[c]
        if m is None or m.name is None:
            unknown += 1
            label = f"unknown-{unknown}"
        else:
            label = m.name
        labels_of[c] = SpeakerLabel(
            label, m is not None and m.name is not None, float(speech[c]),
            None if m is None else m.best, None if m is None else m.score,
            None if m is None else m.llr,
        )  # fmt: skip
    turns = [Turn(round(a, 3), round(b, 3), labels_of[c].label) for a, b, c in raw]
    return Diarization(turns, [labels_of[c] for c in order], segments.duration, list(regions),
                       len(segments), operating_point, thr)  # fmt: skip


def diarize(
    model: SpeakerModel,
    audio: Audio,
    num_speakers: int | None = None,
    operating_point: str | None = NAMING_POINT,
    *,
    window: float = 3.0,
    hop: float = 1.5,
    threshold: float = STOP_DISTANCE,
    sample_rate: int | None = None,
) -> Diarization:
    """Who spoke when in ``audio`` (a path, decoded in blocks, or an array).

    Args:
        model: the speaker model; its store names the clusters.
        num_speakers: the number of speakers when known; else estimated (stopping distance
            ``threshold`` of average-linkage clustering).
        operating_point: the identification operating point (``eer``, ``far=1%``, ...) for
            naming clusters after enrolled speakers; None: no naming.
        window, hop: embedding windows over speech, in seconds.
    """
    if operating_point is not None and _has_speakers(model):
        _calibration(model).threshold(operating_point)  # a bad point fails before any work
    regions = speech_regions(model, audio, sample_rate)
    segs = embed_segments(model, audio, window, hop, regions=regions, sample_rate=sample_rate)
    return diarize_segments(model, segs, regions, num_speakers, threshold, operating_point)
