"""Additive noise and babble at a chosen signal-to-noise ratio, plus shared waveform helpers.

Waveforms are mono float arrays of shape ``(N,)`` at ``sample_rate`` Hz (16 kHz by default).
Every augmenter takes an explicit :class:`numpy.random.Generator`; none touches global random
state, so the same generator seed gives the same output.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> speech = rng.standard_normal(16000).astype(np.float32)
    >>> noisy = Noise(snr_db=(5.0, 5.0))(speech, np.random.default_rng(1))
    >>> noisy.shape, noisy.dtype
    ((16000,), dtype('float32'))
    >>> round(measure_snr_db(speech, noisy - speech), 3)
    5.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from wildvox.audio.io import audio_info, load_audio
from wildvox.registry import AUGMENTS

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
"""File suffixes read from noise, music, speech and RIR directories."""

COLOURS = ("white", "pink", "brown")
"""Built-in noise colours: power spectral density ~ 1/f**alpha with alpha = 0, 1, 2."""

BabblePool = Sequence[np.ndarray | str | Path] | Callable[[np.random.Generator], list[np.ndarray]]
"""Babble sources: waveforms or audio file paths, or a callable drawing waveforms with an rng."""


def check_wave(wav: np.ndarray, name: str = "waveform") -> None:
    """Raise a clear error unless ``wav`` is a non-empty, finite, 1-D floating-point array."""
    if not isinstance(wav, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(wav).__name__}")
    if wav.ndim != 1:
        raise ValueError(f"{name} must be mono with shape (N,), got shape {wav.shape}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise TypeError(f"{name} must be floating point (float32 in [-1, 1]), got {wav.dtype}")
    if wav.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(wav).all():
        raise ValueError(f"{name} contains NaN or infinite samples")


def check_range(value: tuple[float, float], name: str, low: float | None = None) -> None:
    """Raise ValueError unless ``value`` is an ordered pair (``low <= value[0] <= value[1]``)."""
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be a (min, max) pair with min <= max, got {value!r}")
    if low is not None and value[0] < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read a whole audio file as mono float32 at ``sample_rate`` Hz, shape ``(N,)``.

    Uses :func:`wildvox.audio.io.load_audio` (channels averaged, soxr resampling); raises
    :class:`wildvox.audio.io.AudioError` (a ValueError) naming the file when it is unusable.
    """
    return load_audio(path, sample_rate=sample_rate, min_duration=0.0)


def read_segment(
    path: str | Path, length: int, rng: np.random.Generator, sample_rate: int = 16000
) -> np.ndarray:
    """A random ``length``-sample window of an audio file, looped when the file is shorter.

    Only the window is decoded from long files (noise and music recordings run for minutes).
    Returns float32, shape ``(length,)``.
    """
    seconds = length / sample_rate
    info = audio_info(path)
    if info.duration <= seconds + 0.01:
        return crop_or_loop(read_audio(path, sample_rate), length, rng)
    offset = float(rng.uniform(0.0, info.duration - seconds - 0.01))
    wav = load_audio(
        path, sample_rate=sample_rate, offset=offset, duration=seconds + 0.005, min_duration=0.0
    )
    return crop_or_loop(wav, length, rng)


def list_audio_files(directory: str | Path) -> list[Path]:
    """All audio files under ``directory`` (recursively), sorted; ValueError if there are none."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"audio directory {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    return files


def crop_or_loop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``length`` samples from ``x``, looping ``x`` when it is shorter."""
    if x.shape[0] >= length:
        start = int(rng.integers(0, x.shape[0] - length + 1))
        return x[start : start + length]
    start = int(rng.integers(0, x.shape[0]))
    return np.resize(np.roll(x, -start), length)


def power(x: np.ndarray) -> float:
    """Mean power of a waveform over the whole clip (linear, in squared full-scale units)."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def measure_snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """Signal-to-noise ratio in dB from whole-clip powers (``inf`` for silent noise)."""
    p_noise = power(noise)
    if p_noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(power(speech) / p_noise))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * noise`` with ``g`` chosen so that the whole-clip SNR is ``snr_db`` dB.

    Args:
        speech: clean waveform, shape ``(N,)``.
        noise: noise waveform of the same shape.
        snr_db: target signal-to-noise ratio in dB.

    Returns:
        The mix, shape ``(N,)``, dtype of ``speech``. Silent noise or silent speech leaves the
        speech unchanged (no finite gain reaches the target). The mix is not clipped.
    """
    check_wave(speech, "speech")
    check_wave(noise, "noise")
    if noise.shape != speech.shape:
        raise ValueError(f"speech {speech.shape} and noise {noise.shape} must have equal shapes")
    p_speech, p_noise = power(speech), power(noise)
    if p_noise == 0.0 or p_speech == 0.0:
        return speech.copy()
    gain = np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    mixed = speech.astype(np.float64) + gain * noise.astype(np.float64)
    return mixed.astype(speech.dtype)


def coloured_noise(length: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f**alpha power spectrum (white, pink or brown), unit RMS.

    White Gaussian noise is shaped in the frequency domain by ``f ** (-alpha / 2)`` with
    ``alpha`` = 0 (white), 1 (pink), 2 (brown); the DC bin is zeroed. Returns shape
    ``(length,)``, float32.
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; valid colours: {', '.join(COLOURS)}")
    if length <= 0:
        raise ValueError(f"noise length must be positive, got {length}")
    alpha = float(COLOURS.index(colour))
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length)
    freqs[0] = 1.0
    spectrum *= freqs ** (-alpha / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    rms = np.sqrt(np.mean(noise**2))
    if rms == 0.0:
        return noise.astype(np.float32)
    return (noise / rms).astype(np.float32)


@AUGMENTS.register("noise")
class Noise:
    """Additive noise at an SNR drawn uniformly from ``snr_db`` (dB).

    With ``noise_dir`` (MUSAN layout: ``noise/``, ``music/``, ``speech/`` subfolders) the noise is
    a random crop (looped when short) of a random file from the ``categories`` subfolders, read
    with soundfile and resampled with soxr. Without it, the noise is drawn from the built-in
    coloured noises (white, pink, brown), generated with the rng.
    """

    def __init__(
        self,
        snr_db: tuple[float, float] = (0.0, 15.0),
        noise_dir: str | None = None,
        categories: tuple[str, ...] = ("noise", "music"),
        sample_rate: int = 16000,
    ) -> None:
        check_range(snr_db, "snr_db")
        if not categories:
            raise ValueError("categories must name at least one noise subfolder")
        self.snr_db = snr_db
        self.noise_dir = noise_dir
        self.categories = tuple(categories)
        self.sample_rate = sample_rate
        self._files: list[Path] | None = None

    def files(self) -> list[Path]:
        """The noise files (listed once, on first use); empty without ``noise_dir``."""
        if self._files is None:
            if self.noise_dir is None:
                self._files = []
            else:
                root = Path(self.noise_dir)
                present = [root / c for c in self.categories if (root / c).is_dir()]
                if not present:
                    raise ValueError(
                        f"noise_dir {root} has none of the subfolders {', '.join(self.categories)}"
                    )
                self._files = [f for d in present for f in list_audio_files(d)]
        return self._files

    def sample_noise(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """A noise waveform of ``length`` samples, float32."""
        files = self.files()
        if not files:
            colour = COLOURS[int(rng.integers(0, len(COLOURS)))]
            return coloured_noise(length, colour, rng)
        path = files[int(rng.integers(0, len(files)))]
        return read_segment(path, length, rng, self.sample_rate)

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Add noise to ``wav`` (shape ``(N,)``); same shape and dtype."""
        check_wave(wav)
        noise = self.sample_noise(wav.shape[0], rng)
        return mix_at_snr(wav, noise, float(rng.uniform(*self.snr_db)))


@AUGMENTS.register("babble")
class Babble:
    """Babble: the sum of ``num_speakers`` (inclusive range) other utterances at ``snr_db`` dB.

    ``pool`` is a sequence of waveforms or audio file paths (``num_speakers`` distinct entries
    are drawn per call), or a callable ``sample_babble(rng) -> list[np.ndarray]`` that is called
    until it has returned at least the drawn number of waveforms (extra ones are dropped). Each
    talker is cropped/looped to the input length and scaled to unit power before summing, so
    all talkers are equally loud.
    """

    def __init__(
        self,
        pool: BabblePool,
        snr_db: tuple[float, float] = (15.0, 20.0),
        num_speakers: tuple[int, int] = (3, 7),
        sample_rate: int = 16000,
    ) -> None:
        check_range(snr_db, "snr_db")
        check_range(num_speakers, "num_speakers", low=1)
        if not callable(pool) and len(pool) == 0:
            raise ValueError("the babble pool is empty")
        self.pool = pool
        self.snr_db = snr_db
        self.num_speakers = num_speakers
        self.sample_rate = sample_rate

    def _talkers(self, count: int, length: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``count`` talker waveforms of ``length`` samples (cropped or looped)."""
        pool = self.pool
        if callable(pool):
            drawn: list[np.ndarray] = []
            while len(drawn) < count:
                batch = pool(rng)
                if not batch:
                    raise ValueError("the babble pool callable returned no waveforms")
                drawn.extend(batch)
            for talker in drawn[:count]:
                check_wave(talker, "babble talker")
            return [crop_or_loop(talker, length, rng) for talker in drawn[:count]]
        picks = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
        talkers = []
        for i in picks:
            item = pool[int(i)]
            if isinstance(item, np.ndarray):
                check_wave(item, "babble talker")
                talkers.append(crop_or_loop(item, length, rng))
            else:
                talkers.append(read_segment(item, length, rng, self.sample_rate))
        return talkers

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Add babble to ``wav`` (shape ``(N,)``); same shape and dtype."""
        check_wave(wav)
        count = int(rng.integers(self.num_speakers[0], self.num_speakers[1] + 1))
        babble = np.zeros(wav.shape[0], dtype=np.float64)
        for talker in self._talkers(count, wav.shape[0], rng):
            piece = talker.astype(np.float64)
            p = power(piece)
            if p > 0.0:
                babble += piece / np.sqrt(p)
        return mix_at_snr(wav, babble, float(rng.uniform(*self.snr_db)))
