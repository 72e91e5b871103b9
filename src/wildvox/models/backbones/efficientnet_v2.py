"""EfficientNetV2 (Tan & Le, ICML 2021) on a one-channel spectrogram, written in plain torch.

Cerizza, "Speaker Recognition in the Wild" (Sec. IV-A c) uses EfficientNetV2 with TAP pooling
and does not say which size; this module offers three stage tables (``size``):

- ``"s"``: EfficientNetV2-S, Table 4 of Tan & Le (stem 24, Fused-MBConv 1/4/4 x 2/4/4 layers,
  MBConv 4/6/6 x 6/9/15 layers with SE 0.25, 1x1 head conv to 1280 channels);
- ``"b0"``: the EfficientNetV2 baseline (``v2_base_block`` of the authors' code, stem 32);
- ``"tiny"``: our small table (stem 16, head 256) that trains on a CPU.

Blocks follow the reference code: a Fused-MBConv with expansion 1 is a single kxk convolution,
otherwise a kxk expansion convolution and a 1x1 projection; an MBConv is a 1x1 expansion, a kxk
depthwise convolution, squeeze-and-excitation (bottleneck ``se_ratio`` x the block's input
channels, SiLU) and a 1x1 projection. Activations are SiLU, batch-norm eps 1e-3, residual
connections with stochastic depth (rate rising linearly to ``drop_path_rate`` over the blocks,
active only in training) where stride is 1 and the width is unchanged. The strides apply to both
frequency and time, as in the image network, so the output ``(B, C * F', T')`` has
``F' = ceil(F / 2^s)`` and ``T' = ceil(T / 2^s)`` for ``s`` stride-2 layers (5 for "s" and
"b0", 4 for "tiny").

Padded frames are zeroed before every convolution wider than one frame and left out of the SE
averages, so a padded batch gives the same valid output frames as each utterance alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wildvox.models.backbones.resnet_se import strided_length
from wildvox.models.pooling import apply_mask, frame_mask_2d, spectrogram_input
from wildvox.registry import BACKBONES

logger = logging.getLogger(__name__)

_BN_EPS = 1e-3
_DIVISOR = 8


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``repeats`` blocks of ``kind`` ("fused" or "mbconv"), first one strided."""

    kind: str
    expand: int
    kernel: int
    stride: int
    out_channels: int
    repeats: int
    se_ratio: float


# (stem channels, stages, head channels) per size.
STAGE_TABLES: dict[str, tuple[int, tuple[StageSpec, ...], int]] = {
    "s": (
        24,
        (
            StageSpec("fused", 1, 3, 1, 24, 2, 0.0),
            StageSpec("fused", 4, 3, 2, 48, 4, 0.0),
            StageSpec("fused", 4, 3, 2, 64, 4, 0.0),
            StageSpec("mbconv", 4, 3, 2, 128, 6, 0.25),
            StageSpec("mbconv", 6, 3, 1, 160, 9, 0.25),
            StageSpec("mbconv", 6, 3, 2, 256, 15, 0.25),
        ),
        1280,
    ),
    "b0": (
        32,
        (
            StageSpec("fused", 1, 3, 1, 16, 1, 0.0),
            StageSpec("fused", 4, 3, 2, 32, 2, 0.0),
            StageSpec("fused", 4, 3, 2, 48, 2, 0.0),
            StageSpec("mbconv", 4, 3, 2, 96, 3, 0.25),
            StageSpec("mbconv", 6, 3, 1, 112, 5, 0.25),
            StageSpec("mbconv", 6, 3, 2, 192, 8, 0.25),
        ),
        1280,
    ),
    "tiny": (
        16,
        (
            StageSpec("fused", 1, 3, 1, 16, 1, 0.0),
            StageSpec("fused", 4, 3, 2, 32, 1, 0.0),
            StageSpec("fused", 4, 3, 2, 48, 2, 0.0),
            StageSpec("mbconv", 4, 3, 2, 96, 2, 0.25),
            StageSpec("mbconv", 6, 3, 1, 112, 2, 0.25),
        ),
        256,
    ),
}


def round_channels(channels: float, divisor: int = _DIVISOR) -> int:
    """Scale-and-round rule of EfficientNet: nearest multiple of ``divisor``, >= 90 % of input."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


class ConvBnAct(nn.Sequential):
    """``Conv2d`` (same padding, no bias) -> BatchNorm2d -> SiLU (or no activation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        padding = (kernel - 1) // 2
        conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        super().__init__(
            conv,
            nn.BatchNorm2d(out_channels, eps=_BN_EPS),
            nn.SiLU() if act else nn.Identity(),
        )


class SqueezeExcitation(nn.Module):
    """SE with SiLU: gates from the mean over frequency and valid frames of ``(B, C, F, T)``."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            squeezed = x.mean(dim=(2, 3), keepdim=True)
        else:
            count = mask.sum(dim=(2, 3), keepdim=True) * x.shape[2]
            squeezed = (x * mask).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1.0)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(squeezed))))


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``rate``.

    The kept samples are scaled by ``1 / (1 - rate)``; identity in eval mode or for rate 0.
    """
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x * torch.bernoulli(torch.full(shape, keep, dtype=x.dtype, device=x.device)) / keep


class MBConvBlock(nn.Module):
    """Fused-MBConv (``fused=True``) or MBConv block on ``(B, C, F, T)``.

    ``forward(x, mask_in, mask_out)``: ``x`` zero on padded frames is not required; ``mask_in``
    ``(B, 1, 1, T)`` marks the input frames, ``mask_out`` the (possibly strided) output frames.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: StageSpec,
        stride: int,
        drop_rate: float,
    ) -> None:
        super().__init__()
        hidden = in_channels * spec.expand
        self.fused = spec.kind == "fused"
        self.stride = stride
        self.drop_rate = drop_rate
        self.residual = stride == 1 and in_channels == out_channels
        self.expand: nn.Module = nn.Identity()
        self.depthwise: nn.Module | None = None
        self.se: SqueezeExcitation | None = None
        if self.fused:
            if spec.expand == 1:
                self.spatial = ConvBnAct(in_channels, out_channels, spec.kernel, stride)
                self.project: nn.Module = nn.Identity()
            else:
                self.spatial = ConvBnAct(in_channels, hidden, spec.kernel, stride)
                self.project = ConvBnAct(hidden, out_channels, 1, act=False)
        else:
            if spec.expand != 1:
                self.expand = ConvBnAct(in_channels, hidden, 1)
            self.spatial = ConvBnAct(hidden, hidden, spec.kernel, stride, groups=hidden)
            if spec.se_ratio > 0:
                self.se = SqueezeExcitation(hidden, max(1, int(in_channels * spec.se_ratio)))
            self.project = ConvBnAct(hidden, out_channels, 1, act=False)

    def forward(self, x: Tensor, mask_in: Tensor | None, mask_out: Tensor | None) -> Tensor:
        out = self.spatial(apply_mask(self.expand(x), mask_in))
        if self.se is not None:
            out = self.se(out, mask_out)
        out = self.project(out)
        if self.residual:
            out = x + drop_path(out, self.drop_rate, self.training)
        return out


@BACKBONES.register("efficientnet_v2")
class EfficientNetV2(nn.Module):
    """EfficientNetV2 on ``(B, T, F)`` features -> ``(B, head_channels * F', T')``.

    Args:
        feat_dim: ``F``, number of Mel bins.
        size: stage table, ``"s"`` (EfficientNetV2-S), ``"b0"`` or ``"tiny"``.
        width_mult: multiplies every channel count (rounded to a multiple of 8).
        depth_mult: multiplies the blocks per stage (rounded up).
        drop_path_rate: stochastic depth rate of the last block (0 disables it; Tan & Le use
            0.2 for the S model); only active in training mode.
        head_channels: channels of the final 1x1 convolution; default: the table's (1280 for
            "s" and "b0", 256 for "tiny") times ``width_mult``.

    Example:
        >>> net = EfficientNetV2(feat_dim=16, size="tiny", width_mult=0.25)
        >>> net(torch.randn(2, 20, 16)).shape, net.out_channels
        (torch.Size([2, 64, 2]), 64)
    """

    def __init__(
        self,
        feat_dim: int,
        size: str = "b0",
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_path_rate: float = 0.0,
        head_channels: int | None = None,
    ) -> None:
        super().__init__()
        if size not in STAGE_TABLES:
            raise ValueError(f"size must be one of {sorted(STAGE_TABLES)}, got {size!r}")
        if feat_dim < 1 or not width_mult > 0 or not depth_mult > 0:
            raise ValueError(
                f"feat_dim, width_mult and depth_mult must be positive, got {feat_dim}, "
                f"{width_mult}, {depth_mult}"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must lie in [0, 1), got {drop_path_rate}")
        stem_channels, stages, table_head = STAGE_TABLES[size]
        if head_channels is None:
            head_channels = round_channels(table_head * width_mult)
        if head_channels < 1:
            raise ValueError(f"head_channels must be positive, got {head_channels}")
        self.feat_dim = feat_dim
        in_channels = round_channels(stem_channels * width_mult)
        self.stem = ConvBnAct(1, in_channels, 3, stride=2)
        strides = [2]
        plan: list[tuple[int, int, StageSpec, int]] = []
        for spec in stages:
            out_channels = round_channels(spec.out_channels * width_mult)
            for index in range(math.ceil(spec.repeats * depth_mult)):
                stride = spec.stride if index == 0 else 1
                plan.append((in_channels, out_channels, spec, stride))
                strides.append(stride)
                in_channels = out_channels
        self.blocks = nn.ModuleList(
            MBConvBlock(cin, cout, spec, stride, drop_path_rate * i / len(plan))
            for i, (cin, cout, spec, stride) in enumerate(plan)
        )
        self.head = ConvBnAct(in_channels, head_channels, 1)
        self.strides = strides
        freq = feat_dim
        for stride in strides:
            freq = (freq - 1) // stride + 1
        self.out_channels = head_channels * freq
        logger.debug("efficientnet_v2 %s: %d blocks, strides %s", size, len(plan), strides)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames ``(B,)`` for ``lengths`` valid input frames."""
        for stride in self.strides:
            lengths = strided_length(lengths, stride)
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``feats (B, T, F)``, ``lengths (B,)`` -> ``(B, out_channels, T')``."""
        x, mask = spectrogram_input(feats, self.feat_dim, lengths)  # (B, 1, F, T)
        x = self.stem(x)
        if lengths is not None:
            lengths = strided_length(lengths, 2)
            mask = frame_mask_2d(lengths, x.shape[-1], x.dtype)
        for block, stride in zip(self.blocks, self.strides[1:], strict=True):
            mask_out = mask
            if lengths is not None and stride != 1:
                lengths = strided_length(lengths, stride)
                frames = (x.shape[-1] - 1) // stride + 1
                mask_out = frame_mask_2d(lengths, frames, x.dtype)
            x = block(x, mask, mask_out)
            mask = mask_out
        x = self.head(x)
        batch, channels, freq, frames = x.shape
        return x.reshape(batch, channels * freq, frames)
