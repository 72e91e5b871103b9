"""Batched Kaldi-compatible log-Mel filterbank and MFCC features in plain torch.

Both extractors map a padded batch of waveforms ``(B, N)`` (float, nominally in [-1, 1]) plus
optional valid lengths ``(B,)`` in samples to features ``(B, T, D)`` plus valid frame counts
``(B,)``. They reproduce Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats`` (no dither,
Hamming window, ``snip_edges=true``, waveform on the int16 scale) and run on CPU or CUDA.

>>> import torch
>>> fbank = Fbank(n_mels=80)
>>> feats, frames = fbank(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
>>> tuple(feats.shape), frames.tolist()
((2, 98, 80), [98, 48])
"""

from __future__ import annotations

import logging
import math
from typing import overload

import torch
from torch import Tensor, nn

from wildvox.registry import FEATURES

logger = logging.getLogger(__name__)

__all__ = ["Fbank", "Mfcc", "dct_matrix", "kaldi_mel_banks"]

#: Kaldi floors energies at the float32 machine epsilon before taking the log.
LOG_FLOOR = float(torch.finfo(torch.float32).eps)
#: float waveforms in [-1, 1] are scaled to the int16 range Kaldi's tools expect.
INT16_SCALE = 32768.0


def _mel(freq: Tensor) -> Tensor:
    """Kaldi's mel scale, ``1127 ln(1 + f / 700)``; ``freq`` in Hz."""
    return 1127.0 * torch.log1p(freq / 700.0)


def kaldi_mel_banks(
    n_mels: int, n_fft: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0
) -> Tensor:
    """Triangular mel filters exactly as Kaldi's ``MelBanks`` (no VTLN, not HTK mode).

    Args:
        n_mels: number of filters.
        n_fft: padded FFT size in samples (a power of two).
        sample_rate: sampling rate in Hz.
        low_freq: lower edge of the first filter in Hz.
        high_freq: upper edge of the last filter in Hz; ``<= 0`` means Nyquist plus this value.

    Returns:
        float64 weights ``(n_fft // 2 + 1, n_mels)``; the Nyquist row is zero, as in Kaldi.

    Raises:
        ValueError: for an empty or inverted frequency range, or a filter that covers no FFT bin
            (too many filters for the FFT size).
    """
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0.0 else nyquist + high_freq
    if n_mels < 1:
        raise ValueError(f"n_mels must be >= 1, got {n_mels}")
    if not 0.0 <= low_freq < high <= nyquist:
        raise ValueError(
            f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz); "
            f"got low_freq={low_freq} Hz, high_freq={high} Hz"
        )
    n_bins = n_fft // 2
    mel_low, mel_high = _mel(torch.tensor([low_freq, high], dtype=torch.float64)).tolist()
    delta = (mel_high - mel_low) / (n_mels + 1)
    idx = torch.arange(n_mels, dtype=torch.float64)
    left = (mel_low + idx * delta).unsqueeze(0)  # (1, n_mels)
    center = left + delta
    right = left + 2.0 * delta
    bin_mel = _mel(torch.arange(n_bins, dtype=torch.float64) * (sample_rate / n_fft)).unsqueeze(1)
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    weights = torch.where(bin_mel <= center, up, down)
    weights = torch.where((bin_mel > left) & (bin_mel < right), weights, 0.0)
    empty = (weights.sum(0) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"mel filters {empty} cover no FFT bin: n_mels={n_mels} is too large for "
            f"n_fft={n_fft} between {low_freq} and {high} Hz"
        )
    return torch.cat([weights, weights.new_zeros(1, n_mels)])  # Nyquist bin unused


def dct_matrix(n_in: int, n_out: int) -> Tensor:
    """Orthonormal DCT-II as Kaldi's ``ComputeDctMatrix``, transposed for ``x @ dct``.

    Returns:
        float64 ``(n_in, n_out)``: column ``k`` is ``sqrt(c_k / n_in) cos(pi k (n + 0.5) / n_in)``
        with ``c_0 = 1`` and ``c_k = 2`` otherwise.
    """
    if not 1 <= n_out <= n_in:
        raise ValueError(f"need 1 <= n_ceps <= n_mels, got n_ceps={n_out}, n_mels={n_in}")
    n = torch.arange(n_in, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(n_out, dtype=torch.float64).unsqueeze(0)
    mat = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    mat[:, 0] = math.sqrt(1.0 / n_in)
    return mat


def _consecutive(rows: list[int]) -> bool:
    """Whether ``rows`` is an increasing run of consecutive indices (sliceable as a view)."""
    return rows == list(range(rows[0], rows[0] + len(rows)))


def _mask_and_normalise(feats: Tensor, frames: Tensor | None, cmn: bool) -> Tensor:
    """Zero padded frames and optionally subtract each utterance's mean over its valid frames.

    Args:
        feats: ``(B, T, D)`` features.
        frames: valid frame counts ``(B,)``, or None when every frame is valid.
        cmn: subtract the per-utterance mean (instance mean normalisation).
    """
    if frames is None:
        return feats - feats.mean(dim=1, keepdim=True) if cmn else feats
    steps = torch.arange(feats.shape[1], device=feats.device)
    mask = (steps.unsqueeze(0) < frames.unsqueeze(1)).to(feats.dtype)  # (B, T)
    if cmn:
        counts = frames.clamp_min(1).to(feats.dtype).view(-1, 1, 1)
        feats = feats - torch.bmm(mask.unsqueeze(1), feats) / counts
    return feats * mask.unsqueeze(-1)


@FEATURES.register("fbank")
class Fbank(nn.Module):
    """Kaldi-compatible log-Mel filterbank energies for a padded batch.

    Per frame: remove the DC offset, pre-emphasise, apply a Hamming window, zero-pad to the next
    power of two, take the power spectrum, apply Kaldi's triangular mel filters and take the log
    (floored at float32 epsilon). Frames are ``frame_length_ms`` long every ``frame_shift_ms``,
    only those fully inside the signal (``snip_edges=true``). With ``cmn=True`` each utterance's
    mean over its valid frames is subtracted (instance mean normalisation).

    Args:
        n_mels: number of mel filters (80, or 60 for the FBANK60 variant).
        sample_rate: expected input rate in Hz.
        frame_length_ms: window length in ms (25 ms = 400 samples at 16 kHz).
        frame_shift_ms: hop in ms.
        preemphasis: pre-emphasis coefficient in [0, 1].
        low_freq: lower mel edge in Hz.
        high_freq: upper mel edge in Hz; ``<= 0`` is relative to Nyquist.
        cmn: subtract the per-utterance mean.

    Shapes:
        ``forward(wave (B, N), lengths (B,) | None) -> (feats (B, T, n_mels), frames (B,))``;
        padded frames of ``feats`` are zero.
    """

    window: Tensor
    mel_banks: Tensor
    power_to_mel: Tensor

    def __init__(
        self,
        n_mels: int = 80,
        sample_rate: int = 16000,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        preemphasis: float = 0.97,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        cmn: bool = True,
    ) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if not 0.0 <= preemphasis <= 1.0:
            raise ValueError(f"preemphasis must be in [0, 1], got {preemphasis}")
        self.frame_length = int(sample_rate * frame_length_ms * 0.001)
        self.frame_shift = int(sample_rate * frame_shift_ms * 0.001)
        if self.frame_length < 2 or self.frame_shift < 1:
            raise ValueError(
                f"frame_length_ms={frame_length_ms} / frame_shift_ms={frame_shift_ms} give "
                f"{self.frame_length} / {self.frame_shift} samples at {sample_rate} Hz"
            )
        self.n_fft = 1 << (self.frame_length - 1).bit_length()
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.preemphasis = float(preemphasis)
        self.cmn = cmn
        self.out_dim = n_mels
        window = torch.hamming_window(self.frame_length, periodic=False, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        banks = kaldi_mel_banks(n_mels, self.n_fft, sample_rate, low_freq, high_freq)
        self.register_buffer("mel_banks", banks.float(), persistent=False)
        # the int16 input scale folded into the filters (power scales by 2^30)
        power_to_mel = banks * INT16_SCALE**2
        self.register_buffer("power_to_mel", power_to_mel.float(), persistent=False)
        self.block_frames = 1024

    @overload
    def num_frames(self, num_samples: int) -> int: ...

    @overload
    def num_frames(self, num_samples: Tensor) -> Tensor: ...

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames Kaldi extracts from ``num_samples`` samples with ``snip_edges=true``."""
        if isinstance(num_samples, Tensor):
            extra = num_samples - self.frame_length
            count = torch.div(extra, self.frame_shift, rounding_mode="floor")
            return torch.where(num_samples >= self.frame_length, count + 1, 0)
        if num_samples < self.frame_length:
            return 0
        return (num_samples - self.frame_length) // self.frame_shift + 1

    def valid_frames(self, wave: Tensor, lengths: Tensor | None) -> Tensor:
        """Validate ``wave (B, N)`` and ``lengths (B,)`` (samples); return frame counts ``(B,)``.

        Raises:
            ValueError: for a wrong shape, a length beyond ``N`` or shorter than one frame.
            TypeError: for a non-float waveform.
        """
        if wave.dim() != 2 or wave.shape[0] == 0:
            raise ValueError(f"wave must be (batch >= 1, samples), got shape {tuple(wave.shape)}")
        if not wave.is_floating_point():
            raise TypeError(f"wave must be a float tensor in [-1, 1], got {wave.dtype}")
        batch, samples = wave.shape
        if lengths is None:
            if samples < self.frame_length:
                raise ValueError(
                    f"{samples} samples are fewer than one frame ({self.frame_length} samples)"
                )
            return torch.full((batch,), self.num_frames(samples), device=wave.device)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if lengths.is_floating_point() or lengths.is_complex():
            raise TypeError(f"lengths must be an integer tensor, got {lengths.dtype}")
        lengths = lengths.to(device=wave.device, dtype=torch.long)
        short, longest = int(lengths.min()), int(lengths.max())
        if short < self.frame_length:
            raise ValueError(
                f"an utterance has {short} samples, fewer than one frame "
                f"({self.frame_length} samples)"
            )
        if longest > samples:
            raise ValueError(f"a length ({longest}) exceeds the padded length {samples}")
        return self.num_frames(lengths)

    def log_mel(self, wave: Tensor, frames: Tensor | None = None) -> Tensor:
        """Log-mel energies, no masking or CMN.

        Rows are processed longest first in blocks of about :attr:`block_frames` frames so that
        the intermediate spectra stay in cache, and frames past a row's valid count are never
        computed (they are returned as zeros), so padding costs almost nothing. The result does
        not depend on the block size.

        Args:
            wave: float ``(B, N)`` nominally in [-1, 1], ``N >= frame_length``.
            frames: valid frame counts ``(B,)``; None computes every full frame of every row.

        Returns:
            ``(B, T, n_mels)`` with ``T = num_frames(N)``.
        """
        batch, samples = wave.shape
        total = self.num_frames(samples)
        if total == 0:
            raise ValueError(f"{samples} samples are fewer than one frame ({self.frame_length})")
        if frames is None:
            needed = [total] * batch
        else:
            needed = [min(total, max(0, n)) for n in frames.tolist()]
        order = sorted(range(batch), key=lambda row: -needed[row])
        x = wave.to(self.window.dtype)
        out = x.new_zeros(batch, total, self.n_mels)  # rows go here in ``order``
        start = 0
        while start < batch:
            stop_frame = needed[order[start]]  # the longest row of this group
            span = max(1, min(stop_frame, self.block_frames))
            rows = order[start : start + max(1, self.block_frames // span)]
            start += len(rows)
            if stop_frame == 0:
                continue
            limit = (stop_frame - 1) * self.frame_shift + self.frame_length
            index: slice | Tensor = (
                slice(rows[0], rows[-1] + 1)
                if _consecutive(rows)
                else torch.tensor(rows, device=x.device)
            )
            block = x[index, :limit]
            parts = []
            for t0 in range(0, stop_frame, span):
                t1 = min(stop_frame, t0 + span)
                samples_t = slice(
                    t0 * self.frame_shift, (t1 - 1) * self.frame_shift + self.frame_length
                )
                parts.append(self._log_mel_block(block[:, samples_t]))
            feats = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if len(rows) == batch and stop_frame == total and isinstance(index, slice):
                return feats  # one block holds the whole batch: no copy into ``out``
            out[index, :stop_frame] = feats
        return out

    def _log_mel_block(self, x: Tensor) -> Tensor:
        """Log-mel energies ``(B, T, n_mels)`` of all frames of ``x (B, N)``.

        Kaldi's per-frame chain (DC removal, pre-emphasis ``y[i] = s[i] - p s[i-1]`` with
        ``y[0] = (1 - p) s[0]``, window) is computed without materialising intermediate frames:
        pre-emphasis of a frame minus its mean ``m`` equals the signal-level pre-emphasis minus
        ``(1 - p) m``, and the frame means come from a float64 cumulative sum.
        """
        length, shift, p = self.frame_length, self.frame_shift, self.preemphasis
        batch = x.shape[0]
        frames = self.num_frames(x.shape[1])
        stop = (frames - 1) * shift + 1  # slice end for the frame starts
        emph = x[:, 1:] - p * x[:, :-1]  # signal-level pre-emphasis, (B, N - 1)
        cum = nn.functional.pad(x.to(torch.float64).cumsum(1), (1, 0))
        means = (cum[:, length : length + stop : shift] - cum[:, 0:stop:shift]) / length
        buf = x.new_empty(batch, frames, self.n_fft)
        buf[..., length:] = 0.0  # zero padding up to the FFT size
        buf[..., 1:length] = emph.unfold(1, length - 1, shift) * self.window[1:]
        buf[..., 0] = x[:, 0:stop:shift] * ((1.0 - p) * self.window[0])
        offset = (means * (1.0 - p)).to(x.dtype).unsqueeze(-1)
        buf[..., :length].addcmul_(offset, self.window, value=-1.0)
        spec = torch.fft.rfft(buf)  # (B, T, n_fft // 2 + 1)
        power = spec.real.square() + spec.imag.square()
        return torch.log(torch.matmul(power, self.power_to_mel).clamp_min(LOG_FLOOR))

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Features ``(B, T, n_mels)`` and valid frame counts ``(B,)`` for ``wave (B, N)``."""
        frames = self.valid_frames(wave, lengths)
        feats = self.log_mel(wave, None if lengths is None else frames)
        return _mask_and_normalise(feats, None if lengths is None else frames, self.cmn), frames


@FEATURES.register("mfcc")
class Mfcc(nn.Module):
    """Kaldi-compatible MFCCs: orthonormal DCT-II of :class:`Fbank` log-mel energies.

    Same arguments as :class:`Fbank` plus ``n_ceps`` (kept coefficients, ``<= n_mels``) and
    ``cepstral_lifter`` (Kaldi's ``1 + Q/2 sin(pi k / Q)`` liftering; 0 disables it). No energy
    replaces c0 (Kaldi's ``--use-energy=false``). CMN, when on, is applied to the cepstra.

    Shapes:
        ``forward(wave (B, N), lengths (B,) | None) -> (feats (B, T, n_ceps), frames (B,))``.
    """

    dct: Tensor

    def __init__(
        self,
        n_mels: int = 80,
        sample_rate: int = 16000,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        preemphasis: float = 0.97,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        cmn: bool = True,
        n_ceps: int = 80,
        cepstral_lifter: float = 0.0,
    ) -> None:
        super().__init__()
        if cepstral_lifter < 0.0:
            raise ValueError(f"cepstral_lifter must be >= 0, got {cepstral_lifter}")
        self.fbank = Fbank(
            n_mels=n_mels,
            sample_rate=sample_rate,
            frame_length_ms=frame_length_ms,
            frame_shift_ms=frame_shift_ms,
            preemphasis=preemphasis,
            low_freq=low_freq,
            high_freq=high_freq,
            cmn=False,
        )
        dct = dct_matrix(n_mels, n_ceps)
        if cepstral_lifter > 0.0:
            k = torch.arange(n_ceps, dtype=torch.float64)
            dct = dct * (1.0 + 0.5 * cepstral_lifter * torch.sin(math.pi * k / cepstral_lifter))
        self.register_buffer("dct", dct.float(), persistent=False)
        self.n_ceps = n_ceps
        self.cmn = cmn
        self.out_dim = n_ceps

    @overload
    def num_frames(self, num_samples: int) -> int: ...

    @overload
    def num_frames(self, num_samples: Tensor) -> Tensor: ...

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames extracted from ``num_samples`` samples (see :meth:`Fbank.num_frames`)."""
        return self.fbank.num_frames(num_samples)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """MFCCs ``(B, T, n_ceps)`` and valid frame counts ``(B,)`` for ``wave (B, N)``."""
        frames = self.fbank.valid_frames(wave, lengths)
        feats = torch.matmul(
            self.fbank.log_mel(wave, None if lengths is None else frames), self.dct
        )
        return _mask_and_normalise(feats, None if lengths is None else frames, self.cmn), frames
