"""Temporal pooling layers: frame-level features ``(B, C, T)`` -> utterance vectors ``(B, P)``.

Every pooling takes ``lengths`` (valid frames per utterance, ``(B,)``) and ignores the padded
frames, so a padded batch gives the same result as each utterance on its own. Each exposes
``out_dim`` (``P``)::

    >>> import torch
    >>> pool = TemporalStatsPooling(in_dim=4)
    >>> pool(torch.randn(2, 4, 10), torch.tensor([10, 6])).shape
    torch.Size([2, 8])

Standard deviations are population (biased) ones, ``sqrt(E[x^2] - E[x]^2)``, so that an
attentive pooling with uniform weights equals ``tstp`` exactly.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wildvox.registry import POOLINGS

logger = logging.getLogger(__name__)

_VAR_EPS = 1e-7
_ACTIVATIONS = ("relu", "tanh")


def frame_mask_2d(lengths: Tensor, frames: int, dtype: torch.dtype) -> Tensor:
    """``(B, 1, 1, frames)`` mask of valid frames (1.0) for ``(B, C, F, T)`` feature maps."""
    return length_mask(lengths, frames).to(dtype)[:, None, None, :]


def spectrogram_input(
    feats: Tensor, feat_dim: int, lengths: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Features ``(B, T, F)`` -> a one-channel image ``(B, 1, F, T)`` for the 2-D backbones,
    padded frames zeroed, and its ``(B, 1, 1, T)`` frame mask (None without ``lengths``).

    Raises:
        ValueError: ``feats`` is not ``(B, T, feat_dim)``.
    """
    if feats.dim() != 3 or feats.shape[2] != feat_dim:
        raise ValueError(f"expected (B, T, {feat_dim}) features, got {feats.shape}")
    x = feats.transpose(1, 2).unsqueeze(1)
    if lengths is None:
        return x, None
    mask = frame_mask_2d(lengths, x.shape[-1], x.dtype)
    return x * mask, mask


def apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` with padded frames zeroed (``mask`` 1.0 on valid frames, broadcastable), or ``x``."""
    return x if mask is None else x * mask


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean mask ``(B, max_len)``, True on the first ``lengths[b]`` frames of each row."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def _frame_weights(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Uniform weights ``(B, 1, T)`` that sum to one over the valid frames of each row."""
    batch, _, frames = x.shape
    if lengths is None:
        return torch.full((batch, 1, frames), 1.0 / frames, dtype=x.dtype, device=x.device)
    mask = length_mask(lengths, frames).to(x.dtype).unsqueeze(1)
    return mask / lengths.to(x.dtype).clamp(min=1.0).view(batch, 1, 1)


def _masked_softmax(scores: Tensor, lengths: Tensor | None) -> Tensor:
    """Softmax over the last (time) axis of ``scores (B, *, T)``, padded frames get weight 0."""
    if lengths is not None:
        mask = length_mask(lengths, scores.shape[-1])
        mask = mask.view(mask.shape[0], *([1] * (scores.dim() - 2)), mask.shape[1])
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


def weighted_stats(x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted mean and standard deviation over time.

    Args:
        x: ``(B, C, T)`` features.
        weights: ``(B, C, T)`` or ``(B, 1, T)``, non-negative, summing to one over ``T``.

    Returns:
        ``(mean, std)``, each ``(B, C)``.
    """
    mean = torch.sum(x * weights, dim=-1)
    second = torch.sum(x * x * weights, dim=-1)
    std = torch.sqrt((second - mean * mean).clamp(min=_VAR_EPS))
    return mean, std


def _check_dim(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def _check_input(x: Tensor, in_dim: int) -> None:
    if x.dim() != 3 or x.shape[1] != in_dim:
        raise ValueError(f"pooling expects (B, {in_dim}, T) features, got {tuple(x.shape)}")


@POOLINGS.register("tap")
class TemporalAveragePooling(nn.Module):
    """Mean over the valid frames (TAP): ``(B, C, T) -> (B, C)``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        _check_dim("in_dim", in_dim)
        self.in_dim = in_dim
        self.out_dim = in_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        return torch.sum(x * _frame_weights(x, lengths), dim=-1)


@POOLINGS.register("tstp")
class TemporalStatsPooling(nn.Module):
    """Mean and standard deviation over the valid frames (TSTP): ``(B, C, T) -> (B, 2C)``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        _check_dim("in_dim", in_dim)
        self.in_dim = in_dim
        self.out_dim = 2 * in_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        mean, std = weighted_stats(x, _frame_weights(x, lengths))
        return torch.cat([mean, std], dim=1)


class _FrameAttention(nn.Module):
    """One attention weight per frame: ``w_t = softmax_t(mu^T tanh(W x_t + b))`` (Cai et al.).

    ``W`` is ``(attention_dim, C)``; zeroing ``mu`` (``self.score``) gives uniform weights.
    """

    def __init__(self, in_dim: int, attention_dim: int) -> None:
        super().__init__()
        _check_dim("in_dim", in_dim)
        _check_dim("attention_dim", attention_dim)
        self.proj = nn.Conv1d(in_dim, attention_dim, kernel_size=1)
        self.score = nn.Conv1d(attention_dim, 1, kernel_size=1, bias=False)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """``(B, C, T) -> (B, 1, T)`` weights summing to one over the valid frames."""
        return _masked_softmax(self.score(torch.tanh(self.proj(x))), lengths)


@POOLINGS.register("sap")
class SelfAttentivePooling(nn.Module):
    """Self-attentive pooling (SAP, Cai et al. 2018): attention-weighted mean, ``(B, C)``.

    Args:
        in_dim: ``C``, channels of the frame-level features.
        attention_dim: rows of ``W`` in ``h_t = tanh(W x_t + b)``. The paper does not give
            it; its authors' code uses ``W`` of 256 x 256 on the frequency-averaged last stage
            of ResNet34-SE. We keep that width of 256 but feed the flattened ``C * F'``
            channels, so ``W`` is ``256 x C``.
    """

    def __init__(self, in_dim: int, attention_dim: int = 256) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.attention = _FrameAttention(in_dim, attention_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        return torch.sum(x * self.attention(x, lengths), dim=-1)


@POOLINGS.register("asp")
class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (ASP, Okabe et al. 2018): weighted mean + std, ``(B, 2C)``.

    One attention weight per frame, shared by all channels (see ``cas`` for per-channel ones).
    """

    def __init__(self, in_dim: int, attention_dim: int = 128) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = 2 * in_dim
        self.attention = _FrameAttention(in_dim, attention_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        mean, std = weighted_stats(x, self.attention(x, lengths))
        return torch.cat([mean, std], dim=1)


@POOLINGS.register("cas")
class ChannelAttentiveStatsPooling(nn.Module):
    """Channel-dependent attentive statistics pooling (ECAPA-TDNN, Desplanques et al. 2020).

    ``e_{t,c} = v_c^T f(W h_t + b) + k_c``, softmax over time per channel, then the weighted mean
    and std: ``(B, C, T) -> (B, 2C)``. With ``global_context`` the attention also sees the
    utterance mean and std of every channel (``h_t`` becomes ``[x_t; mean; std]``, ``3C``).

    Args:
        in_dim: ``C``.
        attention_dim: bottleneck of the attention (128 in ECAPA-TDNN).
        global_context: append the utterance-level mean and std to every frame.
        activation: ``"relu"`` (ECAPA-TDNN) or ``"tanh"`` (the IDLab "Tanh in CAS" variant).
    """

    def __init__(
        self,
        in_dim: int,
        attention_dim: int = 128,
        global_context: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        _check_dim("in_dim", in_dim)
        _check_dim("attention_dim", attention_dim)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        self.in_dim = in_dim
        self.out_dim = 2 * in_dim
        self.global_context = global_context
        self.use_tanh = activation == "tanh"
        context_dim = 3 * in_dim if global_context else in_dim
        self.proj = nn.Conv1d(context_dim, attention_dim, kernel_size=1)
        self.score = nn.Conv1d(attention_dim, in_dim, kernel_size=1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        context = x
        if self.global_context:
            mean, std = weighted_stats(x, _frame_weights(x, lengths))
            frames = x.shape[-1]
            context = torch.cat(
                [
                    x,
                    mean.unsqueeze(-1).expand(-1, -1, frames),
                    std.unsqueeze(-1).expand(-1, -1, frames),
                ],
                dim=1,
            )
        hidden = self.proj(context)
        hidden = torch.tanh(hidden) if self.use_tanh else F.relu(hidden)
        weights = _masked_softmax(self.score(hidden), lengths)
        mean, std = weighted_stats(x, weights)
        return torch.cat([mean, std], dim=1)


@POOLINGS.register("mha")
class MultiHeadAttentivePooling(nn.Module):
    """Self multi-head attention pooling (India et al. 2019): ``(B, C, T) -> (B, C)``.

    The channels are split into ``num_heads`` groups of ``d = C / num_heads``; head ``h`` weights
    the frames by ``softmax_t(x_{t,h} . u_h / sqrt(d))`` and the weighted means are concatenated.
    Zeroing ``query`` gives uniform weights (TAP).
    """

    def __init__(self, in_dim: int, num_heads: int = 8) -> None:
        super().__init__()
        _check_dim("in_dim", in_dim)
        _check_dim("num_heads", num_heads)
        if in_dim % num_heads != 0:
            raise ValueError(f"in_dim {in_dim} is not divisible by num_heads {num_heads}")
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.num_heads = num_heads
        self.head_dim = in_dim // num_heads
        self.query = nn.Parameter(torch.empty(num_heads, self.head_dim))
        nn.init.normal_(self.query, std=1.0 / math.sqrt(self.head_dim))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        batch, _, frames = x.shape
        heads = x.reshape(batch, self.num_heads, self.head_dim, frames)
        scores = torch.einsum("bhdt,hd->bht", heads, self.query) / math.sqrt(self.head_dim)
        weights = _masked_softmax(scores, lengths)  # (B, H, T)
        pooled = torch.sum(heads * weights.unsqueeze(2), dim=-1)  # (B, H, d)
        return pooled.reshape(batch, self.in_dim)
