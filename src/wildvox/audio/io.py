"""Audio loading and validation: every waveform enters wildvox through here.

Files are read with soundfile (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3), mixed down to mono,
resampled with soxr (high quality) and checked. Every problem raises :class:`AudioError`, which
names the file and says what is wrong, instead of a traceback from deep inside a decoder.

>>> import numpy as np
>>> wav = validate_waveform(np.full((8000, 2), 1000, dtype=np.int16), 8000)
>>> wav.dtype, wav.shape
(dtype('float32'), (16000,))
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_PEAK",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SILENCE_PEAK",
    "AudioError",
    "AudioInfo",
    "SilentAudio",
    "audio_info",
    "load_audio",
    "validate_waveform",
]

#: a waveform whose absolute peak is below this is treated as digital silence.
SILENCE_PEAK = 1e-5
#: a peak above this is not audio (float samples are nominally in [-1, 1]; the filterbank's
#: power spectrum would overflow float32 well before 1e16).
MAX_PEAK = 1e6
#: sample rates accepted, in Hz: telephone 8 kHz down to 4 kHz, studio audio up to 192 kHz.
#: Outside this range a header is wrong (a 1 Hz header would be "resampled" to gigabytes).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 192000
#: arrays with at most this many rows or columns are read as (channels, samples) or vice versa.
MAX_CHANNELS = 16


class AudioError(ValueError):
    """A file or array that cannot be used as speech audio.

    Attributes:
        path: the file, or a label such as ``"<array>"`` for in-memory audio.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


class SilentAudio(AudioError):
    """Digital silence: every sample's magnitude is below :data:`SILENCE_PEAK`. Readers of
    long files in blocks skip such a block instead of failing."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (nothing decoded).

    Attributes:
        path: the file.
        sample_rate: samples per second per channel, in Hz.
        frames: samples per channel (as the header states it).
        channels: number of channels.
    """

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def check_sample_rate(source: str | os.PathLike[str], rate: int) -> None:
    """Refuse a sample rate outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] Hz."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            source,
            f"sample rate {rate} Hz is outside the supported {MIN_SAMPLE_RATE}-"
            f"{MAX_SAMPLE_RATE} Hz (a damaged header, or not audio)",
        )


def _check_path(path: str | os.PathLike[str]) -> Path:
    file = Path(path)
    if file.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not file.exists():
        raise AudioError(path, "file not found")
    return file


def _open_error(path: str | os.PathLike[str], exc: Exception) -> AudioError:
    detail = str(exc).rsplit(": ", 1)[-1] if ": " in str(exc) else str(exc)
    return AudioError(path, f"not a readable audio file (libsndfile: {detail.strip()})")


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read an audio file's header: sample rate, length and channels, without decoding.

    Raises:
        AudioError: the file is missing, a directory, not a recognised audio format, or its
            sample rate is outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`].
    """
    _check_path(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _open_error(path, exc) from None
    check_sample_rate(path, int(info.samplerate))
    return AudioInfo(
        path=str(path),
        sample_rate=int(info.samplerate),
        frames=int(info.frames),
        channels=int(info.channels),
    )


def load_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = 16000,
    offset: float = 0.0,
    duration: float | None = None,
    min_duration: float = 0.1,
    max_duration: float | None = None,
) -> np.ndarray:
    """Decode an audio file (or a segment of it) to float32 mono at ``sample_rate``.

    Only the requested segment is decoded: the reader seeks to ``offset`` and reads
    ``duration`` seconds. Multi-channel audio is averaged to mono, then resampled with soxr (HQ)
    when the file rate differs from ``sample_rate``.

    Args:
        path: a WAV, FLAC, Ogg/Vorbis, Ogg/Opus or MP3 file.
        sample_rate: output rate in Hz.
        offset: start of the segment in seconds.
        duration: length of the segment in seconds; None reads to the end. A segment running
            past the end of the file is cut there.
        min_duration: shortest accepted segment in seconds.
        max_duration: longest accepted segment in seconds (checked from the header, before
            decoding); None accepts any length.

    Returns:
        float32 ``(N,)`` with ``N ~= seconds * sample_rate``, values nominally in [-1, 1].

    Raises:
        AudioError: missing file, directory, unreadable or undecodable data, empty audio, an
            offset past the end, a segment shorter than ``min_duration`` or longer than
            ``max_duration``, NaN/inf samples, or digital silence.
        ValueError: invalid arguments (negative offset, non-positive duration or rate).
    """
    check_sample_rate(f"output rate of {path}", sample_rate)
    if offset < 0.0 or not math.isfinite(offset):
        raise ValueError(f"offset must be a finite number >= 0 s, got {offset}")
    if duration is not None and not duration > 0.0:
        raise ValueError(f"duration must be > 0 s, got {duration}")
    _check_path(path)
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _open_error(path, exc) from None
    with handle:
        rate, total = int(handle.samplerate), int(handle.frames)
        check_sample_rate(path, rate)
        if total <= 0:
            raise AudioError(path, "empty audio (0 frames)")
        start = round(offset * rate)
        if start >= total:
            raise AudioError(
                path, f"offset {offset:.3f} s is past the end of the audio ({total / rate:.3f} s)"
            )
        count = total - start if duration is None else min(round(duration * rate), total - start)
        if max_duration is not None and count > max_duration * rate:
            raise AudioError(
                path,
                f"huge audio: {count / rate:.1f} s is longer than max_duration {max_duration} s",
            )
        try:
            _seek(handle, start)
            data = handle.read(count, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioError(path, f"cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (no samples could be decoded)")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return _finish(mono, rate, str(path), sample_rate, min_duration)


def _seek(handle: sf.SoundFile, start: int) -> None:
    """Position ``handle`` at frame ``start``.

    libsndfile 1.2.2 seeks Ogg/Vorbis inexactly inside the last Ogg page (measured 128 frames
    late), so Vorbis is decoded and discarded up to ``start`` instead; every other format seeks.
    """
    if start == 0:
        return
    if handle.subtype != "VORBIS":
        handle.seek(start)
        return
    for _ in handle.blocks(blocksize=1 << 16, frames=start, dtype="float32"):
        pass


def validate_waveform(
    wav: np.ndarray,
    sample_rate: int,
    *,
    source: str = "<array>",
    target_rate: int = 16000,
    min_duration: float = 0.1,
) -> np.ndarray:
    """Check an in-memory waveform and convert it to float32 mono at ``target_rate``.

    Args:
        wav: ``(N,)``, ``(N, C)`` or ``(C, N)`` with ``C <= 16`` channels; float, or integer PCM
            (int16 / int32 scaled to [-1, 1], uint8 centred at 128).
        sample_rate: rate of ``wav`` in Hz.
        source: a label naming the audio in error messages.
        target_rate: output rate in Hz.
        min_duration: shortest accepted length in seconds.

    Returns:
        float32 ``(N',)`` at ``target_rate``.

    Raises:
        AudioError: unsupported dtype or shape, empty, too short, NaN/inf samples, digital
            silence, or a non-positive sample rate.
    """
    if not isinstance(wav, np.ndarray):
        raise AudioError(source, f"expected a numpy array, got {type(wav).__name__}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioError(source, f"sample rate must be an integer in Hz, got {sample_rate!r}")
    check_sample_rate(source, int(sample_rate))
    check_sample_rate(f"output rate of {source}", target_rate)
    samples = _to_float32(wav, source)
    if samples.ndim == 2:
        rows, cols = samples.shape
        if cols <= MAX_CHANNELS and rows > cols:
            samples = samples.mean(axis=1, dtype=np.float32)
        elif rows <= MAX_CHANNELS and cols > rows:
            samples = samples.mean(axis=0, dtype=np.float32)
        elif rows == cols == 1:
            samples = samples.reshape(1)
        else:
            raise AudioError(
                source,
                f"cannot tell channels from samples in shape {wav.shape}; "
                f"expected (N,), (N, C) or (C, N) with C <= {MAX_CHANNELS}",
            )
    elif samples.ndim != 1:
        raise AudioError(source, f"expected a 1-D or 2-D waveform, got shape {wav.shape}")
    if samples.size == 0:
        raise AudioError(source, "empty audio (0 samples)")
    return _finish(
        np.ascontiguousarray(samples), int(sample_rate), source, target_rate, min_duration
    )


def _to_float32(wav: np.ndarray, source: str) -> np.ndarray:
    """Integer PCM scaled to [-1, 1); float arrays cast to float32."""
    if wav.dtype == np.int16:
        return wav.astype(np.float32) / 32768.0
    if wav.dtype == np.int32:
        return (wav.astype(np.float64) / 2147483648.0).astype(np.float32)
    if wav.dtype == np.uint8:
        return (wav.astype(np.float32) - 128.0) / 128.0
    if wav.dtype in (np.float16, np.float32, np.float64):
        return wav.astype(np.float32, copy=False)
    raise AudioError(
        source,
        f"unsupported sample type {wav.dtype}; use float, int16, int32 or uint8 PCM",
    )


def _finish(
    mono: np.ndarray, rate: int, source: str, target_rate: int, min_duration: float
) -> np.ndarray:
    """Shared checks on a float32 mono ``(N,)`` signal at ``rate``, then resampling."""
    seconds = mono.shape[0] / rate
    if not np.isfinite(mono).all():
        bad = int(np.count_nonzero(~np.isfinite(mono)))
        raise AudioError(source, f"{bad} samples are NaN or infinite")
    if seconds < min_duration:
        shown = f"{seconds:.3f}" if f"{seconds:.3f}" != f"{min_duration:.3f}" else f"{seconds:.6f}"
        raise AudioError(source, f"too short: {shown} s, below the minimum of {min_duration:.3f} s")
    peak = float(np.abs(mono).max())
    if peak > MAX_PEAK:
        raise AudioError(
            source,
            f"peak amplitude {peak:.3g} is not audio (samples are expected in [-1, 1]; "
            f"refused above {MAX_PEAK:.0e})",
        )
    if peak < SILENCE_PEAK:
        raise SilentAudio(
            source, f"digitally silent: peak amplitude {peak:.2e} is below {SILENCE_PEAK:.0e}"
        )
    if rate != target_rate:
        logger.debug("%s: resampling %d Hz -> %d Hz", source, rate, target_rate)
        mono = soxr.resample(mono, rate, target_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
