"""Lossy-channel augmentation: compression codecs and telephone bandwidth.

``codec`` re-encodes the waveform in memory through Ogg/Opus or MP3 with soundfile (libsndfile
1.2.2 encodes both) at a random bitrate and decodes it back. libsndfile exposes the bitrate
only as a ``compression_level`` in [0, 1]; it maps it linearly (measured on libsndfile 1.2.2):

* Opus: 256 kbit/s at level 0 down to 6 kbit/s at level 1;
* MP3 at 16 kHz (MPEG-2 layer III, average-bitrate mode): 160 down to 8 kbit/s.

Average-bitrate MP3 is used because constant-bitrate MP3 below ~25 kbit/s came back shifted
and longer. ``telephone`` resamples to 8 kHz (soxr's anti-aliasing filter removes everything
above 4 kHz), optionally high-passes at 300 Hz, applies 8-bit mu-law companding (G.711 style)
or the GSM 06.10 full-rate codec (libsndfile), and resamples back to 16 kHz.

    >>> import numpy as np
    >>> wav = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    >>> Codec()(wav, np.random.default_rng(0)).shape
    (16000,)
"""

from __future__ import annotations

import io
import logging

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

from wildvox.augment.noise import check_range, check_wave
from wildvox.registry import AUGMENTS

log = logging.getLogger(__name__)

CODECS = {
    # name: (soundfile format, subtype, kbit/s at level 0, kbit/s at level 1, bitrate mode)
    "opus": ("OGG", "OPUS", 256.0, 6.0, None),
    "mp3": ("MP3", "MPEG_LAYER_III", 160.0, 8.0, "AVERAGE"),
}
"""Codecs available to :class:`Codec` and their libsndfile bitrate range."""

TELEPHONE_METHODS = ("mulaw", "gsm")
"""Narrow-band quantisers available to :class:`Telephone`."""


def compression_level(codec: str, kbps: float) -> float:
    """The libsndfile ``compression_level`` giving about ``kbps`` kbit/s with ``codec``."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; valid codecs: {', '.join(CODECS)}")
    _, _, high, low, _ = CODECS[codec]
    if not low <= kbps <= high:
        raise ValueError(f"{codec} bitrate must be within {low:g}-{high:g} kbit/s, got {kbps:g}")
    return min((high - kbps) / (high - low), 0.99)


def encode_decode(wav: np.ndarray, codec: str, kbps: float, sample_rate: int = 16000) -> bytes:
    """Encode ``wav`` (shape ``(N,)``) with ``codec`` at about ``kbps`` kbit/s; the file bytes."""
    check_wave(wav)
    level = compression_level(codec, kbps)
    fmt, subtype, _, _, mode = CODECS[codec]
    buf = io.BytesIO()
    sf.write(
        buf,
        np.clip(wav, -1.0, 1.0).astype(np.float32),
        sample_rate,
        format=fmt,
        subtype=subtype,
        compression_level=level,
        bitrate_mode=mode,
    )
    return buf.getvalue()


def _decode(data: bytes, length: int, name: str) -> np.ndarray:
    """Decode file bytes to float32 mono, cropped or zero-padded to ``length`` samples."""
    try:
        out, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise RuntimeError(f"{name} round trip failed to decode: {err}") from err
    out = out[:length, 0]
    if out.shape[0] < length:
        out = np.pad(out, (0, length - out.shape[0]))
    return out


@AUGMENTS.register("codec")
class Codec:
    """Opus or MP3 round trip at a bitrate drawn uniformly (kbit/s) from the codec's range.

    The decoded waveform is cropped or zero-padded to the input length (libsndfile keeps
    the length for both codecs at 16 kHz; the guard covers other rates).
    """

    def __init__(
        self,
        codecs: tuple[str, ...] = ("opus", "mp3"),
        opus_kbps: tuple[float, float] = (8.0, 32.0),
        mp3_kbps: tuple[float, float] = (16.0, 64.0),
        sample_rate: int = 16000,
    ) -> None:
        unknown = [c for c in codecs if c not in CODECS]
        if unknown or not codecs:
            raise ValueError(f"codecs must be among {', '.join(CODECS)}, got {codecs!r}")
        check_range(opus_kbps, "opus_kbps")
        check_range(mp3_kbps, "mp3_kbps")
        for codec, kbps in (("opus", opus_kbps), ("mp3", mp3_kbps)):
            for value in kbps:
                compression_level(codec, value)  # raises for a bitrate out of range
        self.codecs = tuple(codecs)
        self.kbps = {"opus": opus_kbps, "mp3": mp3_kbps}
        self.sample_rate = sample_rate

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Compress and decompress ``wav`` (shape ``(N,)``); same shape and dtype."""
        check_wave(wav)
        codec = self.codecs[int(rng.integers(0, len(self.codecs)))]
        kbps = float(rng.uniform(*self.kbps[codec]))
        data = encode_decode(wav, codec, kbps, self.sample_rate)
        return _decode(data, wav.shape[0], codec).astype(wav.dtype)


def mu_law(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """Mu-law compand, quantise to ``bits`` bits and expand ``x`` (values in [-1, 1])."""
    x = np.clip(x, -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    levels = 2 ** (bits - 1) - 1
    quantised = np.round(compressed * levels) / levels
    return np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu


@AUGMENTS.register("telephone")
class Telephone:
    """Telephone channel: 8 kHz band limit, 300 Hz high-pass, mu-law or GSM 06.10 coding.

    ``methods`` lists the quantisers to draw from uniformly; ``low_cut_hz`` = 0 disables the
    high-pass (4th-order Butterworth). Output length and dtype equal the input's.
    """

    def __init__(
        self,
        methods: tuple[str, ...] = TELEPHONE_METHODS,
        low_cut_hz: float = 300.0,
        sample_rate: int = 16000,
    ) -> None:
        unknown = [m for m in methods if m not in TELEPHONE_METHODS]
        if unknown or not methods:
            raise ValueError(f"methods must be among {', '.join(TELEPHONE_METHODS)}, got {methods}")
        if not 0.0 <= low_cut_hz < 4000.0:
            raise ValueError(f"low_cut_hz must be within [0, 4000) Hz, got {low_cut_hz}")
        self.methods = tuple(methods)
        self.low_cut_hz = low_cut_hz
        self.sample_rate = sample_rate

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Pass ``wav`` (shape ``(N,)``) through the telephone channel; same shape and dtype."""
        check_wave(wav)
        narrow = soxr.resample(wav.astype(np.float32), self.sample_rate, 8000, quality="HQ")
        if self.low_cut_hz > 0.0:
            sos = butter(4, self.low_cut_hz, btype="highpass", fs=8000, output="sos")
            narrow = sosfilt(sos, narrow)
        method = self.methods[int(rng.integers(0, len(self.methods)))]
        if method == "mulaw":
            coded = mu_law(narrow)
        else:
            buf = io.BytesIO()
            sf.write(buf, np.clip(narrow, -1.0, 1.0), 8000, format="WAV", subtype="GSM610")
            coded = _decode(buf.getvalue(), narrow.shape[0], "GSM 06.10")
        wide = soxr.resample(coded.astype(np.float32), 8000, self.sample_rate, quality="HQ")
        wide = wide[: wav.shape[0]]
        if wide.shape[0] < wav.shape[0]:
            wide = np.pad(wide, (0, wav.shape[0] - wide.shape[0]))
        return wide.astype(wav.dtype)
