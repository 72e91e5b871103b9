"""LAS-MHA: a Listen-Attend-Spell encoder with a self multi-head attention layer on top.

Cerizza, "Speaker Recognition in the Wild" (Sec. IV-A b): "We stacked a MHA layer with 8 heads
on top of the encoder part of the LAS model, composed of CNN layers followed by bidirectional
LSTM layers. A TAP layer was inserted between the CNN and LSTM layers." Layout here:

1. CNN: 3x3 ``Conv2d`` + BatchNorm + ReLU layers on the ``(B, 1, F, T)`` spectrogram, each with
   stride 2 along frequency only (the frequency downsampling of the convolutional LAS encoders,
   Zhang et al. 2017); the channels and remaining bins are flattened to ``C * F'`` per frame.
2. "TAP between the CNN and the LSTM layers". Read literally, TAP (the mean over all frames)
   would leave the LSTM a sequence of one step and the attention nothing to attend over. We read
   it as temporal *average pooling* over non-overlapping windows of ``time_pool`` frames (2 by
   default): it averages along time, keeps a sequence, and halves the frame rate as LAS's
   pyramidal BLSTM does (Chan et al. 2016). ``time_pool=1`` removes it.
3. ``lstm_layers`` bidirectional LSTM layers (LAS: 3 layers of 256 units per direction).
4. Self multi-head attention (Vaswani et al. 2017) with ``num_heads`` heads over the BLSTM
   outputs, with a key padding mask. Output ``(B, 2 * lstm_hidden, ceil(T / time_pool))``; the
   paper pools it with TAP.

Padded frames are zeroed before every convolution, left out of the window averages, never read
by either LSTM direction (the backward one runs on each utterance reversed within its own
length) and masked as attention keys, so a padded batch gives the same valid output frames as
each utterance alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wildvox.models.backbones.ecapa_tdnn import MaskedBLSTM
from wildvox.models.pooling import apply_mask, frame_mask_2d, length_mask
from wildvox.registry import BACKBONES

logger = logging.getLogger(__name__)

_MASK_EPS = 1e-6


class SelfMultiHeadAttention(nn.Module):
    """Scaled dot-product self-attention with ``num_heads`` heads on ``(B, T, D)``.

    Same parameters as ``nn.MultiheadAttention`` (a ``D -> 3D`` input projection and a
    ``D -> D`` output projection), written with plain ops so that it exports to ONNX and padded
    keys are masked explicitly.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"num_heads {num_heads} must be positive and divide {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """``x (B, T, D)``, ``key_mask (B, T)`` True on valid frames or None -> ``(B, T, D)``."""
        batch, frames, dim = x.shape
        qkv = self.in_proj(x).reshape(batch, frames, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, d)
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(x.dtype).min)
        context = torch.matmul(torch.softmax(scores, dim=-1), value)  # (B, H, T, d)
        out: Tensor = self.out_proj(context.transpose(1, 2).reshape(batch, frames, dim))
        return out


@BACKBONES.register("las_mha")
class LASMHA(nn.Module):
    """LAS encoder + self multi-head attention on ``(B, T, F)`` -> ``(B, 2 * lstm_hidden, T')``.

    The paper gives only the layer types and the 8 heads; the sizes default to those of LAS
    (3 BLSTM layers of 256 units per direction) and of its convolutional front ends (two 3x3
    layers of 32 channels).

    Args:
        feat_dim: ``F``, number of Mel bins.
        channels: output channels of each CNN layer; each halves the frequency bins.
        lstm_hidden: LSTM units per direction; the output has ``2 * lstm_hidden`` channels.
        lstm_layers: stacked bidirectional LSTM layers.
        num_heads: attention heads (8 in the paper); must divide ``2 * lstm_hidden``.
        time_pool: frames averaged into one between the CNN and the LSTMs (``T' = ceil(T /
            time_pool)``); see the module docstring for this reading of the paper's "TAP".

    Example:
        >>> net = LASMHA(feat_dim=16, channels=[4], lstm_hidden=8, lstm_layers=1)
        >>> net(torch.randn(2, 21, 16)).shape, net.out_channels
        (torch.Size([2, 16, 11]), 16)
    """

    def __init__(
        self,
        feat_dim: int,
        channels: Sequence[int] = (32, 32),
        lstm_hidden: int = 256,
        lstm_layers: int = 3,
        num_heads: int = 8,
        time_pool: int = 2,
    ) -> None:
        super().__init__()
        if min(feat_dim, lstm_hidden, lstm_layers, num_heads, time_pool) < 1:
            raise ValueError(
                "feat_dim, lstm_hidden, lstm_layers, num_heads and time_pool must be positive, "
                f"got {feat_dim}, {lstm_hidden}, {lstm_layers}, {num_heads}, {time_pool}"
            )
        if len(channels) < 1 or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be one or more positive sizes, got {list(channels)}")
        if (2 * lstm_hidden) % num_heads != 0:
            raise ValueError(
                f"num_heads {num_heads} must divide the BLSTM output size {2 * lstm_hidden}"
            )
        self.feat_dim = feat_dim
        self.time_pool = time_pool
        convs: list[nn.Module] = []
        norms: list[nn.Module] = []
        in_channels = 1
        freq = feat_dim
        for out_channels in channels:
            convs.append(
                nn.Conv2d(in_channels, int(out_channels), 3, stride=(2, 1), padding=1, bias=False)
            )
            norms.append(nn.BatchNorm2d(int(out_channels)))
            in_channels = int(out_channels)
            freq = (freq - 1) // 2 + 1
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        lstm_in = in_channels * freq
        self.lstms = nn.ModuleList(
            MaskedBLSTM(lstm_in if i == 0 else 2 * lstm_hidden, lstm_hidden)
            for i in range(lstm_layers)
        )
        self.attention = SelfMultiHeadAttention(2 * lstm_hidden, num_heads)
        self.out_channels = 2 * lstm_hidden

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames ``(B,)``: ``ceil(lengths / time_pool)``."""
        if self.time_pool == 1:
            return lengths
        return torch.div(lengths - 1, self.time_pool, rounding_mode="floor") + 1

    def _pool_time(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Mean of the valid frames in each window of ``time_pool``: ``(B, D, T) -> (B, D, T')``.

        ``ceil_mode`` keeps a last partial window; its divisor counts only the frames inside the
        input, and dividing by the pooled mask turns the window means into valid-frame means.
        """
        if self.time_pool == 1:
            return x
        k = self.time_pool
        pooled = F.avg_pool1d(apply_mask(x, mask), k, k, ceil_mode=True)
        if mask is None:
            return pooled
        counts = F.avg_pool1d(mask, k, k, ceil_mode=True)
        return pooled / counts.clamp(min=_MASK_EPS)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``feats (B, T, F)``, ``lengths (B,)`` -> ``(B, out_channels, ceil(T / time_pool))``."""
        if feats.dim() != 3 or feats.shape[2] != self.feat_dim:
            raise ValueError(f"expected (B, T, {self.feat_dim}) features, got {feats.shape}")
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        mask: Tensor | None = None
        if lengths is not None:
            mask = frame_mask_2d(lengths, x.shape[-1], x.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.relu(norm(conv(apply_mask(x, mask))))
        batch, channels, freq, frames = x.shape
        frame_mask = None if mask is None else mask[:, :, 0, :]  # (B, 1, T)
        x = self._pool_time(x.reshape(batch, channels * freq, frames), frame_mask)
        out_lengths = None if lengths is None else self.output_lengths(lengths)
        x = x.transpose(1, 2)  # (B, T', C * F')
        for lstm in self.lstms:
            x = lstm(x, out_lengths)
        key_mask = None if out_lengths is None else length_mask(out_lengths, x.shape[1])
        return self.attention(x, key_mask).transpose(1, 2)
