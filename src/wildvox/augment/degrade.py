"""Deterministic test-condition degradations for robustness benchmarks.

Each degradation is a callable ``degrade(wav, rng) -> wav`` on a mono float32 waveform of shape
``(N,)`` at 16 kHz, like the training augmenters, but with its strength fixed (one SNR, one
bitrate, one RT60) so that a benchmark condition means one thing. The training augmenters are
reused as they are: :class:`~wildvox.augment.codec.Telephone` (8 kHz band limit, 300 Hz high-pass,
G.711 mu-law or GSM 06.10), :class:`~wildvox.augment.codec.Codec` (Opus / MP3 through libsndfile),
:class:`~wildvox.augment.noise.Noise` (coloured noise) and :class:`~wildvox.augment.noise.Babble`.
This module adds what they lack: reverberation at a chosen RT60 (:class:`RoomReverb`, rooms
simulated by pyroomacoustics through :mod:`wildvox.augment.reverb`), crops to a fixed duration
of speech (:class:`Crop`) and overdriven gain with hard clipping (:class:`Clip`).

:func:`condition_rng` derives the generator of one file under one condition from a seed and the
two names, so a file's degraded version does not depend on which other files are processed or in
which order.

    >>> import numpy as np
    >>> wav = np.random.default_rng(0).uniform(-0.5, 0.5, 32000).astype(np.float32)
    >>> Crop(1.0)(wav, condition_rng(0, "crop-1s", "a.wav")).shape
    (16000,)
    >>> float(np.abs(Clip(12.0)(wav, condition_rng(0, "clip", "a.wav"))).max())
    0.5
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from wildvox.augment.codec import Codec, Telephone
from wildvox.augment.noise import Babble, Noise, check_wave
from wildvox.augment.reverb import _ism_rir, reverberate

Degrade = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""A degradation: ``(wav (N,), rng) -> wav (M,)`` (M = N except for crops)."""


def condition_rng(seed: int, condition: str, item: str) -> np.random.Generator:
    """The generator for ``item`` (a file id) under ``condition``: seeded by ``seed`` and the
    CRC-32 of both names, independent of processing order."""
    keys = [seed, zlib.crc32(condition.encode("utf-8")), zlib.crc32(item.encode("utf-8"))]
    return np.random.default_rng(keys)


@dataclass(frozen=True)
class Crop:
    """A window of ``seconds`` holding speech: drawn at random (10 ms steps) among the windows
    with at least ``min_energy`` of the most energetic window's energy, so that silence or
    padding is not what remains. Inputs already that short are returned unchanged."""

    seconds: float
    min_energy: float = 0.5
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not self.seconds > 0.0:
            raise ValueError(f"crop length must be positive, got {self.seconds} s")
        if not 0.0 <= self.min_energy <= 1.0:
            raise ValueError(f"min_energy must be within [0, 1], got {self.min_energy}")

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``wav`` (N,) -> (min(N, seconds * sample_rate),), same dtype."""
        check_wave(wav)
        length = round(self.seconds * self.sample_rate)
        if wav.shape[0] <= length:
            return wav.copy()
        energy = np.concatenate([[0.0], np.cumsum(np.square(wav, dtype=np.float64))])
        starts = np.arange(0, wav.shape[0] - length + 1, self.sample_rate // 100)
        windows = energy[starts + length] - energy[starts]
        good = starts[windows >= self.min_energy * windows.max()]
        start = int(good[int(rng.integers(0, len(good)))])
        return wav[start : start + length].copy()


@dataclass(frozen=True)
class Clip:
    """Overdrive: the peak is scaled to ``overdrive_db`` dB above ``level``, then every sample
    is hard-clipped to ``[-level, level]`` (full scale 1). Same shape and dtype; ``rng`` unused."""

    overdrive_db: float = 12.0
    level: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.level <= 1.0:
            raise ValueError(f"clip level must be within (0, 1], got {self.level}")
        if self.overdrive_db < 0.0:
            raise ValueError(f"overdrive must be >= 0 dB, got {self.overdrive_db}")

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Amplify and clip ``wav`` (N,)."""
        check_wave(wav)
        peak = float(np.max(np.abs(wav)))
        if peak == 0.0:
            return wav.copy()
        gain = self.level * 10.0 ** (self.overdrive_db / 20.0) / peak
        return np.clip(wav * gain, -self.level, self.level).astype(wav.dtype)


def room_rirs(
    rt60: float, count: int, rng: np.random.Generator, sample_rate: int = 16000
) -> list[np.ndarray]:
    """``count`` simulated RIRs (float32, peak 1) of shoebox rooms with a target ``rt60`` (s).

    Rooms are 4-9 m x 3-7 m x 2.5-3.5 m, source and microphone at least 0.5 m from the walls and
    1-3 m apart; absorption follows Sabine's formula for ``rt60`` (pyroomacoustics ISM with the
    stochastic late tail of :mod:`wildvox.augment.reverb`). Rooms whose surface cannot absorb
    little enough for ``rt60`` are redrawn.
    """
    if not rt60 > 0.0 or count < 1:
        raise ValueError(f"need rt60 > 0 and count >= 1, got rt60={rt60}, count={count}")
    rirs: list[np.ndarray] = []
    while len(rirs) < count:
        room = rng.uniform([4.0, 3.0, 2.5], [9.0, 7.0, 3.5])
        source = rng.uniform(0.5, room - 0.5)
        mic = rng.uniform(0.5, room - 0.5)
        if not 1.0 <= float(np.linalg.norm(source - mic)) <= 3.0:
            continue
        try:
            rirs.append(_ism_rir(rt60, room, source, mic, rng, sample_rate))
        except ValueError:  # Sabine: this RT60 is out of reach for this room
            continue
    return rirs


class RoomReverb:
    """Reverberation at one RT60: each call convolves with one RIR drawn from a bank of
    ``num_rooms`` rooms (simulated once, from ``bank_seed``), energy-preserving, aligned on the
    direct path. Same shape and dtype."""

    def __init__(
        self, rt60: float, num_rooms: int = 8, bank_seed: int = 0, sample_rate: int = 16000
    ) -> None:
        self.rt60 = rt60
        self.rirs = room_rirs(rt60, num_rooms, np.random.default_rng(bank_seed), sample_rate)

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reverberate ``wav`` (N,)."""
        return reverberate(wav, self.rirs[int(rng.integers(0, len(self.rirs)))])


def coloured_noise_at(snr_db: float) -> Noise:
    """White, pink or brown noise (drawn per call) at exactly ``snr_db`` dB (whole clip)."""
    return Noise(snr_db=(snr_db, snr_db))


def babble_at(snr_db: float, pool: Sequence[np.ndarray], talkers: int = 5) -> Babble:
    """Babble of ``talkers`` utterances from ``pool`` at exactly ``snr_db`` dB (whole clip)."""
    return Babble(list(pool), snr_db=(snr_db, snr_db), num_speakers=(talkers, talkers))


def telephone(method: str) -> Telephone:
    """The telephone channel with one quantiser: ``"mulaw"`` (G.711) or ``"gsm"`` (GSM 06.10)."""
    return Telephone(methods=(method,))


def codec_at(codec: str, kbps: float) -> Codec:
    """An Opus or MP3 round trip at ``kbps`` kbit/s (libsndfile's nominal setting)."""
    return Codec(codecs=(codec,), opus_kbps=(kbps, kbps), mp3_kbps=(kbps, kbps))


def identity(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clean condition: ``wav`` unchanged."""
    return wav


def standard_conditions(
    babble_pool: Sequence[np.ndarray] | None = None, rir_seed: int = 0
) -> dict[str, Degrade]:
    """The benchmark's conditions by name (issue #14): clean, telephone (mu-law, GSM), Opus
    8 kbit/s, MP3 32 kbit/s, coloured noise and babble at 10/5/0 dB, reverberation at RT60
    0.3/0.6/0.9 s, crops to 1/2/4 s and clipping 12 dB over the clip level. Babble conditions
    are present only with a ``babble_pool`` (waveforms of speakers that are never tested)."""
    conditions: dict[str, Degrade] = {
        "clean": identity,
        "telephone-mulaw": telephone("mulaw"),
        "telephone-gsm": telephone("gsm"),
        "opus-8k": codec_at("opus", 8.0),
        "mp3-32k": codec_at("mp3", 32.0),
    }
    for snr in (10, 5, 0):
        conditions[f"noise-{snr}dB"] = coloured_noise_at(float(snr))
    if babble_pool is not None:
        for snr in (10, 5, 0):
            conditions[f"babble-{snr}dB"] = babble_at(float(snr), babble_pool)
    for rt60 in (0.3, 0.6, 0.9):
        conditions[f"reverb-{rt60:.1f}s"] = RoomReverb(rt60, bank_seed=rir_seed)
    for seconds in (1, 2, 4):
        conditions[f"crop-{seconds}s"] = Crop(float(seconds))
    conditions["clip-12dB"] = Clip(12.0)
    return conditions
