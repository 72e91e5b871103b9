"""ECAPA-TDNN (Desplanques et al. 2020) with the IDLab VoxSRC-20 variants (Thienpondt et al.).

Layout: a kernel-5 Conv1d + ReLU + BN on the features, ``num_blocks`` SE-Res2Blocks (kernel 3,
dilations 2, 3, 4 and 5 for a fourth block, Res2Net ``scale`` groups, SE bottleneck 128), then
multi-layer feature aggregation (MFA): the block outputs are concatenated and a 1x1 Conv1d +
ReLU maps them to ``mfa_channels``. As in the ECAPA-TDNN paper (Sec. 3.3), the input of each
block is the sum of the outputs of the first layer and of all preceding blocks.

IDLab variants: ``lstm_first`` puts a bidirectional LSTM before the first convolution;
``dynamic_dilation`` gives the Res2Net groups of every block the dilations 2, 3, 4, 5, 6, 2, 3
instead of one dilation per block. The output is meant for ``cas`` pooling with global context
(the ECAPA-TDNN attentive statistics).

Padded frames are zeroed before every temporal convolution, left out of the SE means, and the
backward LSTM reads each utterance from its own last valid frame, so a padded batch gives the
same valid output frames as each utterance alone.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wildvox.models.pooling import apply_mask, length_mask
from wildvox.registry import BACKBONES

logger = logging.getLogger(__name__)

BLOCK_DILATIONS = (2, 3, 4, 5)
DYNAMIC_DILATIONS = (2, 3, 4, 5, 6, 2, 3)


class ConvReluBn(nn.Module):
    """Conv1d -> ReLU -> BatchNorm1d on ``(B, C, T)``, same length (padding ``d * (k - 1) / 2``)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation, padding=padding)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(F.relu(self.conv(x)))


class SqueezeExcitation1d(nn.Module):
    """SE gates from the mean over the valid frames; ``mask`` is ``(B, 1, T)`` or None."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv1d(channels, bottleneck, 1)
        self.fc2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            squeezed = x.mean(dim=2, keepdim=True)
        else:
            squeezed = (x * mask).sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))


class SERes2Block(nn.Module):
    """1x1 ConvReluBn -> Res2Net dilated convolutions -> 1x1 ConvReluBn -> SE, plus residual.

    The first of the ``scale`` channel groups passes straight through; group ``i >= 1`` is
    convolved after adding the previous group's output (Gao et al., Res2Net).
    """

    def __init__(
        self, channels: int, scale: int, dilations: tuple[int, ...], se_bottleneck: int
    ) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.conv_in = ConvReluBn(channels, channels)
        self.res2 = nn.ModuleList(
            ConvReluBn(width, width, kernel_size=3, dilation=d) for d in dilations
        )
        self.conv_out = ConvReluBn(channels, channels)
        self.se = SqueezeExcitation1d(channels, se_bottleneck)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        groups = torch.chunk(self.conv_in(x), self.scale, dim=1)
        outputs = [groups[0]]
        previous: Tensor | None = None
        for index, conv in enumerate(self.res2):
            group = groups[index + 1]
            if previous is not None:
                group = group + previous
            previous = conv(apply_mask(group, mask))
            outputs.append(previous)
        out = self.se(self.conv_out(torch.cat(outputs, dim=1)), mask)
        return out + x


def _reverse_index(lengths: Tensor, frames: int) -> Tensor:
    """``(B, T)`` gather index that reverses the first ``lengths[b]`` frames of each row."""
    steps = torch.arange(frames, device=lengths.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    return torch.where(steps <= last, last - steps, steps)


class MaskedBLSTM(nn.Module):
    """Bidirectional LSTM on ``(B, T, F)`` -> ``(B, T, 2 * hidden)`` that respects ``lengths``.

    The backward direction is a second LSTM run on each utterance reversed within its own
    length, so padding never enters the valid frames (an export-friendly replacement for
    ``pack_padded_sequence``).
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.forward_lstm = nn.LSTM(in_dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(in_dim, hidden, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        forward_out, _ = self.forward_lstm(x)
        if lengths is None:
            backward_out, _ = self.backward_lstm(x.flip(1))
            return torch.cat([forward_out, backward_out.flip(1)], dim=2)
        index = _reverse_index(lengths, x.shape[1]).unsqueeze(2)
        reversed_x = x.gather(1, index.expand(-1, -1, x.shape[2]))
        backward_out, _ = self.backward_lstm(reversed_x)
        backward_out = backward_out.gather(1, index.expand(-1, -1, backward_out.shape[2]))
        return torch.cat([forward_out, backward_out], dim=2)


@BACKBONES.register("ecapa_tdnn")
class ECAPATDNN(nn.Module):
    """ECAPA-TDNN on ``(B, T, F)`` features -> ``(B, mfa_channels, T)`` frame-level features.

    Args:
        feat_dim: ``F``, feature bins (80 MFCCs or log Mel energies).
        channels: ``C``, width of the SE-Res2Blocks (512, 1024 or 2048 in the papers).
        num_blocks: SE-Res2Blocks, 1 to 4 (dilations 2, 3, 4, 5; 3 in ECAPA-TDNN, 4 in IDLab's).
        scale: Res2Net groups per block (8); must divide ``channels``.
        se_bottleneck: SE bottleneck width (128).
        mfa_channels: MFA output size. Default: 1536 for ``C <= 1024`` (ECAPA-TDNN, WeSpeaker)
            and ``3 * C`` above.
        lstm_first: put a bidirectional LSTM before the first convolution (IDLab "BLSTM").
        lstm_hidden: LSTM units per direction; the papers do not give it.
        dynamic_dilation: dilations 2, 3, 4, 5, 6, 2, 3 (cycled if ``scale != 8``) across the
            Res2Net groups of every block instead of one dilation per block (IDLab "DD").

    Example:
        >>> net = ECAPATDNN(feat_dim=20, channels=32, num_blocks=3, se_bottleneck=8)
        >>> net(torch.randn(2, 50, 20)).shape, net.out_channels
        (torch.Size([2, 1536, 50]), 1536)
    """

    def __init__(
        self,
        feat_dim: int,
        channels: int = 512,
        num_blocks: int = 3,
        scale: int = 8,
        se_bottleneck: int = 128,
        mfa_channels: int | None = None,
        lstm_first: bool = False,
        lstm_hidden: int = 256,
        dynamic_dilation: bool = False,
    ) -> None:
        super().__init__()
        if min(feat_dim, channels, scale, se_bottleneck, lstm_hidden) < 1:
            raise ValueError("feat_dim, channels, scale, se_bottleneck, lstm_hidden must be > 0")
        if not 1 <= num_blocks <= len(BLOCK_DILATIONS):
            raise ValueError(f"num_blocks must be 1 to {len(BLOCK_DILATIONS)}, got {num_blocks}")
        if scale < 2 or channels % scale != 0:
            raise ValueError(f"scale {scale} must be >= 2 and divide channels {channels}")
        if mfa_channels is None:
            mfa_channels = 1536 if channels <= 1024 else 3 * channels
        if mfa_channels < 1:
            raise ValueError(f"mfa_channels must be positive, got {mfa_channels}")
        self.feat_dim = feat_dim
        self.lstm: MaskedBLSTM | None = None
        first_in = feat_dim
        if lstm_first:
            self.lstm = MaskedBLSTM(feat_dim, lstm_hidden)
            first_in = 2 * lstm_hidden
        self.layer1 = ConvReluBn(first_in, channels, kernel_size=5)
        blocks = []
        for dilation in BLOCK_DILATIONS[:num_blocks]:
            if dynamic_dilation:
                group_dilations = tuple(
                    DYNAMIC_DILATIONS[i % len(DYNAMIC_DILATIONS)] for i in range(scale - 1)
                )
            else:
                group_dilations = (dilation,) * (scale - 1)
            blocks.append(SERes2Block(channels, scale, group_dilations, se_bottleneck))
        self.blocks = nn.ModuleList(blocks)
        self.mfa = nn.Conv1d(num_blocks * channels, mfa_channels, kernel_size=1)
        self.out_channels = mfa_channels

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames ``(B,)``: ECAPA-TDNN keeps the frame rate."""
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``feats (B, T, F)``, ``lengths (B,)`` -> ``(B, out_channels, T)``."""
        if feats.dim() != 3 or feats.shape[2] != self.feat_dim:
            raise ValueError(f"expected (B, T, {self.feat_dim}) features, got {feats.shape}")
        mask: Tensor | None = None
        if lengths is not None:
            mask = length_mask(lengths, feats.shape[1]).to(feats.dtype).unsqueeze(1)
        x = feats if self.lstm is None else self.lstm(feats, lengths)
        x = apply_mask(x.transpose(1, 2), mask)
        total = self.layer1(x)
        outputs = []
        for block in self.blocks:
            out = block(total, mask)
            outputs.append(out)
            total = total + out
        return F.relu(self.mfa(torch.cat(outputs, dim=1)))
