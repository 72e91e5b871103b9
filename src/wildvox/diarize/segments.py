"""Windowed embeddings of long recordings, decoded block by block.

:func:`embed_segments` cuts a recording (or only its speech regions) into overlapping windows,
e.g. 3 s windows every 1.5 s, and embeds them in batches. A file is decoded one block of about
``block_seconds`` at a time (never whole), so memory stays flat whatever its length.
:func:`speech_regions` runs the VAD block by block the same way.

Example (no model needed for the window times)::

    >>> window_times(4.0, window=3.0, hop=1.5)
    [(0.0, 3.0), (1.0, 4.0)]
    >>> window_times(10.0, window=3.0, hop=1.5, regions=[(1.0, 2.0), (4.0, 8.0)])
    [(1.0, 2.0), (4.0, 7.0), (5.0, 8.0)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wildvox.audio.io import SilentAudio, audio_info, load_audio
from wildvox.audio.vad import speech_segments
from wildvox.data.files import atomic_path

if TYPE_CHECKING:
    from wildvox.api import SpeakerModel

__all__ = ["Segments", "embed_segments", "speech_regions", "window_times"]

Audio = str | os.PathLike[str] | np.ndarray
Region = tuple[float, float]
#: speech regions shorter than this (seconds) get no window of their own.
MIN_WINDOW = 0.5
#: regions closer than this (seconds) across a block boundary are joined by speech_regions.
JOIN_GAP = 0.1


@dataclass(frozen=True)
class Segments:
    """Per-window embeddings of one recording.

    Attributes:
        starts, ends: (N,) float64 window start and end times in seconds.
        embeddings: (N, D) float32 embeddings, one row per window.
        duration: length of the whole recording in seconds.
    """

    starts: np.ndarray
    ends: np.ndarray
    embeddings: np.ndarray
    duration: float

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.npz`` (atomically) with ``starts``, ``ends``, ``embeddings``,
        ``duration``."""
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, starts=self.starts, ends=self.ends, embeddings=self.embeddings,
                     duration=np.float64(self.duration))  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Segments:
        """Read what :meth:`save` wrote; ``ValueError`` naming the file when it is not that."""
        try:
            with np.load(path, allow_pickle=False) as z:
                seg = cls(
                    np.asarray(z["starts"], dtype=np.float64),
                    np.asarray(z["ends"], dtype=np.float64),
                    np.asarray(z["embeddings"], dtype=np.float32),
                    float(z["duration"]),
                )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a segments file ({exc})") from exc
        n = len(seg)
        if seg.ends.shape != (n,) or seg.embeddings.ndim != 2 or len(seg.embeddings) != n:
            raise ValueError(
                f"{path}: starts {seg.starts.shape}, ends {seg.ends.shape} and embeddings "
                f"{seg.embeddings.shape} do not describe the same windows"
            )
        if not (np.isfinite(seg.embeddings).all() and np.isfinite(seg.starts).all()):
            raise ValueError(f"{path}: NaN or infinite values")
        return seg


def window_times(
    duration: float,
    window: float = 3.0,
    hop: float = 1.5,
    regions: Sequence[Region] | None = None,
) -> list[Region]:
    """Start and end times (s) of the windows covering ``regions`` (default: the whole input).

    Each region gets windows of ``window`` seconds every ``hop`` seconds; the last one is moved
    back to end at the region's end, so the whole region is covered; a region shorter than
    ``window`` is one window of its own length (none under :data:`MIN_WINDOW`).
    """
    if not (window > 0 and hop > 0):
        raise ValueError(f"window and hop must be > 0 s, got {window} and {hop}")
    if hop > window:
        raise ValueError(f"hop ({hop} s) longer than the window ({window} s) leaves gaps")
    out: list[Region] = []
    for a, b in [(0.0, duration)] if regions is None else regions:
        a, b = max(0.0, float(a)), min(float(duration), float(b))
        if b - a < MIN_WINDOW:
            continue
        if b - a <= window:
            out.append((a, b))
            continue
        n = math.ceil((b - a - window) / hop - 1e-9) + 1
        starts = [a + k * hop for k in range(n - 1)] + [b - window]
        out.extend((round(s, 6), round(s + window, 6)) for s in starts)
    return out


@dataclass(frozen=True)
class _Source:
    """A file (decoded span by span) or an in-memory waveform at the model's rate."""

    path: str | os.PathLike[str] | None
    wave: np.ndarray | None
    rate: int
    duration: float

    def read(self, start: float, end: float) -> np.ndarray:
        """Samples of [start, end) s (a file decodes only that span)."""
        if self.wave is not None:
            return self.wave[round(start * self.rate) : round(end * self.rate)]
        assert self.path is not None
        try:
            return load_audio(self.path, sample_rate=self.rate, offset=start,
                              duration=end - start, min_duration=0.0)  # fmt: skip
        except SilentAudio:
            return np.zeros(round((end - start) * self.rate), dtype=np.float32)


def _source(model: SpeakerModel, audio: Audio, sample_rate: int | None) -> _Source:
    if isinstance(audio, np.ndarray):
        wave = model.load(audio, sample_rate)  # checks, converts, resamples once
        return _Source(None, wave, model.sample_rate, wave.shape[0] / model.sample_rate)
    seconds = audio_info(audio).duration
    model._check_length(str(audio), seconds)
    return _Source(audio, None, model.sample_rate, float(seconds))


def _spans(duration: float, block: float) -> Iterator[Region]:
    n = max(1, round(duration / block))
    step = duration / n
    for k in range(n):
        yield k * step, duration if k == n - 1 else (k + 1) * step


def speech_regions(
    model: SpeakerModel, audio: Audio, sample_rate: int | None = None
) -> list[Region]:
    """Speech regions ``[(start, end), ...]`` (s) of a recording, by the VAD of
    :func:`wildvox.audio.vad.speech_segments`, run block by block (a file is never decoded
    whole); regions cut by a block boundary are joined again."""
    src = _source(model, audio, sample_rate)
    out: list[Region] = []
    for a, b in _spans(src.duration, model.block_seconds):
        wave = src.read(a, b)
        if wave.size == 0 or not np.any(wave):
            continue
        for s, e in speech_segments(wave, model.sample_rate):
            s, e = a + s, min(b, a + e)
            if out and s - out[-1][1] <= JOIN_GAP:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
    return out


def embed_segments(
    model: SpeakerModel,
    audio: Audio,
    window: float = 3.0,
    hop: float = 1.5,
    *,
    regions: Sequence[Region] | None = None,
    batch_size: int = 32,
    sample_rate: int | None = None,
) -> Segments:
    """Embeddings of overlapping windows of ``audio`` (a path or a (T,) array).

    Args:
        model: the speaker model.
        audio: a file (decoded in blocks of about ``model.block_seconds``, never whole) or an
            array at ``sample_rate`` (default: the model's rate).
        window, hop: window length and step in seconds (see :func:`window_times`).
        regions: embed only these ``(start, end)`` spans in seconds (e.g. speech regions);
            default the whole recording.
        batch_size: windows embedded together.

    Returns:
        :class:`Segments` with N windows in time order: starts/ends (N,) s, embeddings (N, D).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    src = _source(model, audio, sample_rate)
    times = window_times(src.duration, window, hop, regions)
    times.sort()
    rate = model.sample_rate
    embs = np.zeros((len(times), model.embed_dim), dtype=np.float32)
    i = 0
    while i < len(times):
        # one decoded block: the windows starting within block_seconds of this one
        j = i
        while j < len(times) and times[j][0] < times[i][0] + model.block_seconds:
            j += 1
        lo, hi = times[i][0], max(e for _, e in times[i:j])
        wave = src.read(lo, hi)
        waves = []
        for s, e in times[i:j]:
            piece = wave[round((s - lo) * rate) : round((e - lo) * rate)]
            waves.append(piece if piece.size else np.zeros(1, dtype=np.float32))
        order = sorted(range(len(waves)), key=lambda k: len(waves[k]))
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            embs[[i + k for k in idx]] = model._embed_waves([waves[k] for k in idx])
        i = j
    starts = np.array([s for s, _ in times], dtype=np.float64)
    ends = np.array([e for _, e in times], dtype=np.float64)
    return Segments(starts, ends, embs, src.duration)
