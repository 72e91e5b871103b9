"""A seeded generator of test "meetings" from the test speakers of a VoxCeleb-layout corpus.

A meeting has 2-6 speakers taking turns of 1-15 s, separated by pauses or overlapping (a
meeting-level target of 0-20 % overlapped speech), optionally with white noise at a given SNR.
Turns are made of the speakers' utterances with their leading and trailing silence cut;
the reference RTTM holds the speech regions (Silero VAD of each utterance) of every turn.

Every fifth file of a speaker (``files[::5]``) is kept for enrolment and never used in a
meeting (:func:`split_files`), so a store enrolled from them names speakers on unseen audio.
The same corpus, seed and arguments give the same meeting, sample for sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wildvox.audio.io import load_audio
from wildvox.audio.vad import speech_segments
from wildvox.diarize.rttm import Turn, write_rttm

__all__ = [
    "Meeting",
    "MeetingCorpus",
    "generate_meeting",
    "overlap_fraction",
    "split_files",
    "write_meeting",
]

SAMPLE_RATE = 16000
#: speech level of every speaker before its random gain, in dBFS (RMS over speech).
LEVEL_DB = -26.0


def split_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(enrolment, meeting)`` files of one speaker: every fifth for enrolment (from the first),
    the rest for meetings."""
    enrol = files[::5]
    return enrol, [f for f in files if f not in set(enrol)]


@dataclass
class MeetingCorpus:
    """The test speakers of a corpus (``veri_test.txt``) and a cache of their decoded clips."""

    root: Path
    _clips: dict[Path, tuple[np.ndarray, list[tuple[float, float]]]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        trials = self.root / "veri_test.txt"
        if not trials.is_file():
            raise FileNotFoundError(f"{trials}: no such file (the test trials list the speakers)")
        spk: set[str] = set()
        for no, line in enumerate(trials.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{trials}:{no}: expected 'label file file', got {line!r}")
            spk.update(p.split("/")[0] for p in parts[1:])
        self.speakers: list[str] = sorted(spk)

    def files(self, speaker: str) -> list[Path]:
        """All audio files of ``speaker``, sorted."""
        found = sorted((self.root / "wav" / speaker).glob("*/*.*"))
        if not found:
            raise FileNotFoundError(f"{self.root / 'wav' / speaker}: no audio files")
        return found

    def clip(self, path: Path) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """A file trimmed to its speech (16 kHz float32) and its speech regions (s) in it."""
        if path not in self._clips:
            wave = load_audio(path, sample_rate=SAMPLE_RATE, min_duration=0.0)
            regions = speech_segments(wave, SAMPLE_RATE)
            if regions:
                a, b = regions[0][0], regions[-1][1]
                wave = wave[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)]
                regions = [(s - a, e - a) for s, e in regions]
            self._clips[path] = (wave, regions)
        return self._clips[path]


@dataclass(frozen=True)
class Meeting:
    """A generated meeting: ``audio`` (T,) float32 at ``sample_rate`` Hz, the reference
    ``turns`` (speech regions, seconds), its ``speakers`` and its measured ``overlap`` (fraction
    of speech time with more than one speaker)."""

    audio: np.ndarray
    sample_rate: int
    turns: list[Turn]
    speakers: list[str]
    overlap: float
    seed: int

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sample_rate


def overlap_fraction(turns: list[Turn], step: float = 0.01) -> float:
    """Fraction of speech time (s) covered by two or more turns, on a ``step``-second grid."""
    if not turns:
        return 0.0
    n = int(np.ceil(max(t.end for t in turns) / step)) + 1
    count = np.zeros(n, dtype=np.int32)
    for t in turns:
        count[round(t.start / step) : round(t.end / step)] += 1
    speech = int((count > 0).sum())
    return float((count > 1).sum() / speech) if speech else 0.0


def _turn_audio(
    corpus: MeetingCorpus, pool: list[Path], rng: np.random.Generator, length: float
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """About ``length`` seconds of one speaker: utterances from ``pool`` (drawn in random
    order) end to end, cut at ``length``; with their speech regions (s)."""
    pieces: list[np.ndarray] = []
    regions: list[tuple[float, float]] = []
    at = 0.0
    for k in rng.permutation(len(pool)).tolist() * 4:
        wave, spans = corpus.clip(pool[k])
        if not spans:
            continue
        pieces.append(wave)
        regions += [(at + s, at + e) for s, e in spans]
        at += wave.shape[0] / SAMPLE_RATE
        if at >= length:
            break
    audio = np.concatenate(pieces)[: round(length * SAMPLE_RATE)]
    cut = audio.shape[0] / SAMPLE_RATE
    return audio, [(s, min(e, cut)) for s, e in regions if s < cut and min(e, cut) - s > 0.01]


def generate_meeting(
    corpus: MeetingCorpus,
    num_speakers: int,
    seed: int,
    *,
    duration: tuple[float, float] = (60.0, 90.0),
    turn: tuple[float, float] = (1.0, 15.0),
    pause: tuple[float, float] = (0.1, 1.5),
    max_overlap: float = 0.2,
    snr_db: float | None = None,
) -> Meeting:
    """A meeting of ``num_speakers`` test speakers, reproducible from ``seed``.

    Args:
        duration: range of the meeting's length in seconds (drawn uniformly; the last turn
            ends past it).
        turn: range of one turn's length in seconds.
        pause: range of a pause between turns in seconds.
        max_overlap: the meeting's overlap target is drawn in [0, max_overlap]; half of the
            speaker changes then overlap, each by twice the target times the new turn's length
            (at most half of either turn). The measured fraction is ``Meeting.overlap``.
        snr_db: white noise at this SNR (dB, against the mean speech power); None: none.
    """
    if not 1 <= num_speakers <= len(corpus.speakers):
        raise ValueError(f"num_speakers must be in 1..{len(corpus.speakers)}, got {num_speakers}")
    if not 0.0 <= max_overlap < 0.5:
        raise ValueError(f"max_overlap must be in [0, 0.5), got {max_overlap}")
    rng = np.random.default_rng(seed)
    speakers = [corpus.speakers[i] for i in rng.choice(len(corpus.speakers), num_speakers, False)]
    pools = {s: split_files(corpus.files(s))[1] for s in speakers}
    gains = {s: 10 ** ((LEVEL_DB + rng.uniform(-4.0, 4.0)) / 20) for s in speakers}
    target = rng.uniform(*duration)
    rho = rng.uniform(0.0, max_overlap)
    order = [speakers[i] for i in rng.permutation(num_speakers)]
    placed: list[tuple[float, np.ndarray]] = []
    turns: list[Turn] = []
    start = end = 0.0
    prev_len = 0.0
    k = 0
    while end < target or k < num_speakers:
        if k < num_speakers:
            who = order[k]
        else:
            who = str(rng.choice([s for s in speakers if s != turns[-1].speaker]))
        wave, spans = _turn_audio(corpus, pools[who], rng, rng.uniform(*turn))
        speech = np.concatenate([wave[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)]
                                 for a, b in spans])  # fmt: skip
        wave = wave * (gains[who] / max(float(np.sqrt(np.mean(speech**2))), 1e-6))
        length = wave.shape[0] / SAMPLE_RATE
        if k == 0:
            start = 0.5
        elif rng.uniform() < 0.5 and rho > 0:
            start = end - min(2 * rho * length, 0.5 * prev_len, 0.5 * length)
        else:
            start = end + rng.uniform(*pause)
        start = round(start * SAMPLE_RATE) / SAMPLE_RATE
        placed.append((start, wave))
        turns += [Turn(round(start + a, 4), round(start + b, 4), who) for a, b in spans]
        end, prev_len = start + length, length
        k += 1
    total = round((end + 0.5) * SAMPLE_RATE)
    mix = np.zeros(total, dtype=np.float64)
    for at, wave in placed:
        i = round(at * SAMPLE_RATE)
        mix[i : i + wave.shape[0]] += wave
    if snr_db is not None:
        power = float(np.mean([g**2 for g in gains.values()]))
        mix += rng.standard_normal(total) * np.sqrt(power / 10 ** (snr_db / 10))
    peak = float(np.max(np.abs(mix)))
    if peak > 0.99:
        mix *= 0.99 / peak
    turns.sort()
    return Meeting(mix.astype(np.float32), SAMPLE_RATE, turns, sorted(speakers),
                   overlap_fraction(turns), seed)  # fmt: skip


def write_meeting(meeting: Meeting, folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``<folder>/<name>.wav`` (16-bit PCM) and ``<name>.rttm``; returns both paths."""
    import soundfile as sf

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    wav, rttm = out / f"{name}.wav", out / f"{name}.rttm"
    sf.write(wav, meeting.audio, meeting.sample_rate, subtype="PCM_16")
    write_rttm(rttm, meeting.turns, name)
    return wav, rttm
