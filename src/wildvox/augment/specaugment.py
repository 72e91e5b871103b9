"""SpecAugment time and frequency masking on a batch of features.

Time masks are ``w ~ U{0, ..., max_time_width}`` frames wide, frequency masks
``w ~ U{0, ..., max_freq_width}`` bands wide (the papers: 0-5 frames, 0-10 or 0-8 bands), each
at a uniform start so that it fits inside the utterance. Masked cells are set to the
utterance's mean over its valid frames and all bands, which is 0 after cepstral mean
normalisation and a neutral value before it (zero would be a loud value for raw log-Mel
energies). Masks are drawn for the whole batch at once, without a Python loop over it.

    >>> import torch
    >>> spec = SpecAugment(num_time_masks=2, max_time_width=5)
    >>> feats = torch.randn(4, 200, 80)
    >>> spec(feats, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 200, 80])
    >>> bool(torch.equal(spec.eval()(feats), feats))
    True
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def _span_mask(
    batch: int,
    num_masks: int,
    max_width: int,
    size: torch.Tensor,
    extent: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """A boolean mask ``(B, extent)`` that is True inside ``num_masks`` random spans per row.

    ``size`` (shape ``(B,)``) is the valid extent of each row; spans lie within it.
    """
    gen_device = generator.device if generator is not None else device
    size = size.to(gen_device)
    shape = (batch, num_masks)
    width = torch.randint(0, max_width + 1, shape, generator=generator, device=gen_device)
    width = torch.minimum(width, size[:, None])
    unit = torch.rand(shape, generator=generator, device=gen_device)
    start = (unit * (size[:, None] - width + 1).to(unit.dtype)).long()
    start, width = start.to(device), width.to(device)
    pos = torch.arange(extent, device=device)[None, None, :]
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return inside.any(dim=1)


class SpecAugment(nn.Module):
    """Random time and frequency masking of ``(B, T, F)`` features; identity in eval mode.

    Args:
        num_time_masks: time masks per utterance.
        max_time_width: widest time mask, in frames (widths are uniform in 0..max).
        num_freq_masks: frequency masks per utterance.
        max_freq_width: widest frequency mask, in bands.
    """

    def __init__(
        self,
        num_time_masks: int = 1,
        max_time_width: int = 5,
        num_freq_masks: int = 1,
        max_freq_width: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_time_masks", num_time_masks),
            ("max_time_width", max_time_width),
            ("num_freq_masks", num_freq_masks),
            ("max_freq_width", max_freq_width),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.num_time_masks = num_time_masks
        self.max_time_width = max_time_width
        self.num_freq_masks = num_freq_masks
        self.max_freq_width = max_freq_width

    def masks(
        self,
        feats: torch.Tensor,
        generator: torch.Generator | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The boolean time mask ``(B, T)`` and frequency mask ``(B, F)`` for ``feats``.

        Time masks lie within ``lengths`` (valid frames per utterance, ``(B,)``) when given.
        """
        if feats.dim() != 3:
            raise ValueError(f"features must have shape (B, T, F), got {tuple(feats.shape)}")
        batch, frames, bands = feats.shape
        device = feats.device
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long)
        elif lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        time_size = lengths.long().clamp(0, frames)
        time_mask = _span_mask(
            batch,
            self.num_time_masks,
            self.max_time_width,
            time_size,
            frames,
            generator,
            device,
        )
        freq_size = torch.full((batch,), bands, dtype=torch.long)
        freq_mask = _span_mask(
            batch,
            self.num_freq_masks,
            self.max_freq_width,
            freq_size,
            bands,
            generator,
            device,
        )
        return time_mask, freq_mask

    def forward(
        self,
        feats: torch.Tensor,
        generator: torch.Generator | None = None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask ``feats`` ``(B, T, F)`` (a new tensor; the input is not modified).

        Args:
            feats: features, e.g. log-Mel energies, on any device.
            generator: random generator (CPU or on ``feats``' device); the global one if None.
            lengths: valid frames per utterance ``(B,)``; all ``T`` frames if None.
        """
        if not self.training or (self.num_time_masks == 0 and self.num_freq_masks == 0):
            return feats
        time_mask, freq_mask = self.masks(feats, generator, lengths)
        if lengths is None:
            mean = feats.mean(dim=(1, 2), keepdim=True)
        else:
            frames = torch.arange(feats.shape[1], device=feats.device)
            valid = frames[None, :] < lengths.to(feats.device)[:, None]
            weights = valid.to(feats.dtype)[:, :, None]
            count = (weights.sum(dim=(1, 2), keepdim=True) * feats.shape[2]).clamp_min(1.0)
            mean = (feats * weights).sum(dim=(1, 2), keepdim=True) / count
        mask = time_mask[:, :, None] | freq_mask[:, None, :]
        return torch.where(mask, mean.expand_as(feats), feats)

    def extra_repr(self) -> str:
        return (
            f"num_time_masks={self.num_time_masks}, max_time_width={self.max_time_width}, "
            f"num_freq_masks={self.num_freq_masks}, max_freq_width={self.max_freq_width}"
        )
