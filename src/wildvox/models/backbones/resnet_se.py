"""ResNet34 with Squeeze-and-Excitation on log Mel spectrograms ("in the wild" ResNet34-SE).

The features ``(B, T, F)`` are read as a one-channel image ``(B, 1, F, T)``. The layout follows
Cerizza, "Speaker Recognition in the Wild" (Sec. IV-A) and the works it cites (Chung et al.
2020; Heo et al. 2020): ResNet34 blocks ``[3, 4, 6, 3]`` with half the channels (32-64-128-256),
a 3x3 stride-1 first convolution, no max pooling, and an SE layer (reduction 8, Hu et al.) at
the end of the residual branch of every block. Stages 2-4 halve both frequency and time, so the
output is ``(B, 8 * base_channels * ceil(F / 8), ceil(T / 8))``.

Padded frames are zeroed before every convolution and left out of the SE averages, so a padded
batch gives the same valid output frames as each utterance alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wildvox.models.pooling import apply_mask, length_mask, spectrogram_input
from wildvox.registry import BACKBONES

logger = logging.getLogger(__name__)

_STAGE_STRIDES = (1, 2, 2, 2)


def strided_length(lengths: Tensor, stride: int) -> Tensor:
    """Frames after a ``kernel k, padding (k - 1) / 2`` convolution: ``ceil(L / stride)``."""
    if stride == 1:
        return lengths
    return torch.div(lengths - 1, stride, rounding_mode="floor") + 1


class SqueezeExcitation2d(nn.Module):
    """SE layer (Hu et al.): channel gates from the mean over frequency and the valid frames.

    ``x`` is ``(B, C, F, T)``; ``mask`` is ``(B, 1, 1, T)`` (1.0 on valid frames) or None.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"SE reduction must be a positive integer, got {reduction}")
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            squeezed = x.mean(dim=(2, 3))
        else:
            count = mask.sum(dim=(2, 3)).clamp(min=1.0) * x.shape[2]
            squeezed = (x * mask).sum(dim=(2, 3)) / count
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return x * gate.unsqueeze(-1).unsqueeze(-1)


class SEBasicBlock(nn.Module):
    """Two 3x3 convolutions + BN, SE on the residual branch, identity or 1x1 shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int, se_reduction: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcitation2d(channels, se_reduction)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: Tensor, mask_out: Tensor | None) -> Tensor:
        """``x`` must already be zero on padded frames; ``mask_out`` marks the output frames."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(apply_mask(out, mask_out)))
        out = self.se(out, mask_out)
        return F.relu(out + self.shortcut(x))


@BACKBONES.register("resnet34_se")
class ResNetSE(nn.Module):
    """2-D SE-ResNet on ``(B, T, F)`` features -> ``(B, C * F', T')`` frame-level features.

    Args:
        feat_dim: ``F``, number of Mel bins.
        base_channels: channels of the first stage; stages use ``base * (1, 2, 4, 8)``.
            32 is the half-width ResNet34 of the paper.
        layers: blocks per stage (ResNet34: ``[3, 4, 6, 3]``).
        se_reduction: SE bottleneck ratio (8).

    Example:
        >>> net = ResNetSE(feat_dim=16, base_channels=4, layers=[1, 1, 1, 1])
        >>> net(torch.randn(2, 20, 16)).shape, net.out_channels
        (torch.Size([2, 64, 3]), 64)
    """

    def __init__(
        self,
        feat_dim: int,
        base_channels: int = 32,
        layers: Sequence[int] = (3, 4, 6, 3),
        se_reduction: int = 8,
    ) -> None:
        super().__init__()
        if feat_dim < 1 or base_channels < 1:
            raise ValueError(
                f"feat_dim and base_channels must be positive, got {feat_dim}, {base_channels}"
            )
        if len(layers) != len(_STAGE_STRIDES) or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {list(layers)}")
        self.feat_dim = feat_dim
        self.conv1 = nn.Conv2d(1, base_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        blocks: list[SEBasicBlock] = []
        strides: list[int] = []
        in_channels = base_channels
        freq = feat_dim
        for stage, (num_blocks, stride) in enumerate(zip(layers, _STAGE_STRIDES, strict=True)):
            channels = base_channels * 2**stage
            for index in range(int(num_blocks)):
                block_stride = stride if index == 0 else 1
                blocks.append(SEBasicBlock(in_channels, channels, block_stride, se_reduction))
                strides.append(block_stride)
                in_channels = channels
            freq = (freq - 1) // stride + 1
        self.blocks = nn.ModuleList(blocks)
        self.block_strides = strides
        self.out_channels = in_channels * freq

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames ``(B,)`` for ``lengths`` valid input frames."""
        for stride in _STAGE_STRIDES:
            lengths = strided_length(lengths, stride)
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``feats (B, T, F)``, ``lengths (B,)`` -> ``(B, out_channels, T')``."""
        x, mask = spectrogram_input(feats, self.feat_dim, lengths)  # (B, 1, F, T)
        x = apply_mask(F.relu(self.bn1(self.conv1(x))), mask)
        for block, stride in zip(self.blocks, self.block_strides, strict=True):
            mask_out = mask
            if lengths is not None and stride != 1:
                lengths = strided_length(lengths, stride)
                mask_out = length_mask(lengths, (x.shape[-1] - 1) // stride + 1)
                mask_out = mask_out.to(x.dtype)[:, None, None, :]
            x = apply_mask(block(x, mask_out), mask_out)
            mask = mask_out
        batch, channels, freq, frames = x.shape
        return x.reshape(batch, channels * freq, frames)


@BACKBONES.register("se_resnet34")
class SEResNet34(ResNetSE):
    """The IDLab VoxSRC-20 SE-ResNet34 (Thienpondt et al.), meant for ``cas`` pooling.

    The IDLab report adds SE blocks after each ResBlock of the ResNet34 of Garcia-Romero et al.
    (MagNetO) but does not give the channel widths, so, as our brief says for that case, this
    uses the same half-width layout as ``resnet34_se`` (``base_channels=32``); set
    ``base_channels`` to change it. Same options as :class:`ResNetSE`.
    """
