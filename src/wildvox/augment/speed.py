"""Speed perturbation (sox ``speed``): changes duration and pitch together.

A factor ``f`` plays the waveform ``f`` times faster: ``N`` samples become ``round(N / f)`` and
every frequency is multiplied by ``f``. It is done by resampling with soxr from ``f * 16 kHz`` to
16 kHz (only the ratio matters).

    >>> import numpy as np
    >>> speed_perturb(np.zeros(11000, dtype=np.float32), 1.1).shape
    (10000,)
    >>> speed_speaker_id("id10001", 0.9)
    'id10001@sp0.9'
"""

from __future__ import annotations

import logging

import numpy as np
import soxr

from wildvox.augment.noise import check_wave
from wildvox.registry import AUGMENTS

log = logging.getLogger(__name__)

_REFERENCE_RATE = 16000


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play ``wav`` (shape ``(N,)``) ``factor`` times faster: shape ``(round(N / factor),)``.

    Pitch and formants move by ``factor`` as with sox ``speed``; the dtype is kept.
    """
    check_wave(wav)
    if not factor > 0.0 or not np.isfinite(factor):
        raise ValueError(f"speed factor must be a positive finite number, got {factor}")
    if factor == 1.0:
        return wav.copy()
    out = soxr.resample(wav, _REFERENCE_RATE * factor, _REFERENCE_RATE, quality="HQ")
    return np.asarray(out, dtype=wav.dtype)


def speed_speaker_id(speaker: str, factor: float) -> str:
    """The speaker id used for speed-perturbed copies counted as new speakers (WeSpeaker style).

    A factor of 1 keeps the original id.
    """
    if factor == 1.0:
        return speaker
    return f"{speaker}@sp{factor:g}"


def fit_length(wav: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Random-crop a longer ``wav`` or wrap-pad a shorter one to exactly ``length`` samples."""
    if wav.shape[0] >= length:
        start = int(rng.integers(0, wav.shape[0] - length + 1))
        return wav[start : start + length]
    return np.pad(wav, (0, length - wav.shape[0]), mode="wrap")


@AUGMENTS.register("speed")
class SpeedPerturb:
    """Speed perturbation by a factor drawn uniformly from ``factors``.

    With ``keep_length`` (online use) the result is random-cropped (slower speech, longer) or
    wrap-padded (faster speech, shorter) back to the input length; without it (offline) the
    length becomes ``round(N / factor)``.
    """

    def __init__(self, factors: tuple[float, ...] = (0.9, 1.1), keep_length: bool = True) -> None:
        if not factors or any(not f > 0.0 for f in factors):
            raise ValueError(f"speed factors must be positive, got {factors!r}")
        self.factors = tuple(float(f) for f in factors)
        self.keep_length = keep_length

    def sample_factor(self, rng: np.random.Generator) -> float:
        """One factor from ``factors``, uniformly."""
        return self.factors[int(rng.integers(0, len(self.factors)))]

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Speed-perturb ``wav`` (shape ``(N,)``), keeping the dtype."""
        out = speed_perturb(wav, self.sample_factor(rng))
        if self.keep_length:
            out = fit_length(out, wav.shape[0], rng)
        return out
