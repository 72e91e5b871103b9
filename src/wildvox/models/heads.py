"""Classification heads: embeddings ``(B, D)`` (+ labels) -> logits ``(B, num_classes)``.

Margin heads apply their margin only when labels are given (training); without labels they
return the scaled cosines. ``margin`` and ``scale`` are plain float attributes that a margin
scheduler may change between steps. Losses are computed by the trainer.

>>> import torch
>>> head = build_head("aam", embed_dim=8, num_classes=5, margin=0.2, scale=30.0)
>>> head(torch.randn(4, 8), torch.tensor([0, 1, 2, 3])).shape
torch.Size([4, 5])
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wildvox.models.embedder import build_component, is_tracing
from wildvox.registry import HEADS

logger = logging.getLogger(__name__)

_SQRT_EPS = 1e-12


def _check_sizes(embed_dim: int, num_classes: int, scale: float) -> None:
    if embed_dim < 1 or num_classes < 1:
        raise ValueError(
            f"embed_dim and num_classes must be positive, got {embed_dim}, {num_classes}"
        )
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")


def _check_inputs(emb: Tensor, labels: Tensor | None, embed_dim: int, num_classes: int) -> None:
    if emb.dim() != 2 or emb.shape[1] != embed_dim:
        raise ValueError(f"head expects (B, {embed_dim}) embeddings, got {tuple(emb.shape)}")
    if labels is None:
        return
    if labels.shape != (emb.shape[0],) or labels.dtype != torch.long:
        raise ValueError(
            f"labels must be int64 of shape ({emb.shape[0]},), got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    if not is_tracing() and bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.tolist()}")


@HEADS.register("softmax")
class SoftmaxHead(nn.Module):
    """Plain linear classifier ``W e + b``; ``margin`` and ``scale`` are kept but unused."""

    def __init__(self, embed_dim: int, num_classes: int, margin: float, scale: float) -> None:
        super().__init__()
        _check_sizes(embed_dim, num_classes, scale)
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.margin = float(margin)
        self.scale = float(scale)
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, emb: Tensor, labels: Tensor | None = None) -> Tensor:
        """``emb (B, D)``, ``labels (B,)`` (ignored) -> logits ``(B, num_classes)``."""
        _check_inputs(emb, labels, self.embed_dim, self.num_classes)
        logits: Tensor = self.linear(emb)
        return logits

    def prototypes(self) -> Tensor:
        """Length-normalised class weights ``(num_classes, D)``."""
        return F.normalize(self.linear.weight, dim=1)


class _CosineHead(nn.Module, abc.ABC):
    """Shared parts of the cosine heads: ``subcenters`` weight rows per class, class-major."""

    def __init__(
        self, embed_dim: int, num_classes: int, margin: float, scale: float, subcenters: int
    ) -> None:
        super().__init__()
        _check_sizes(embed_dim, num_classes, scale)
        if subcenters < 1:
            raise ValueError(f"subcenters must be positive, got {subcenters}")
        if margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.subcenters = subcenters
        self.margin = float(margin)
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def subcenter_cosines(self, emb: Tensor) -> Tensor:
        """Cosines to every sub-center, ``(B, num_classes, subcenters)``."""
        cos = F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1))
        return cos.view(emb.shape[0], self.num_classes, self.subcenters)

    def cosines(self, emb: Tensor) -> Tensor:
        """Cosine to each class (max over its sub-centers), ``(B, num_classes)``."""
        cos = self.subcenter_cosines(emb)
        return cos.squeeze(2) if self.subcenters == 1 else cos.amax(dim=2)

    @abc.abstractmethod
    def target_logit(self, cos_target: Tensor) -> Tensor:
        """Margin-penalised cosine of the true class, ``(B,)`` -> ``(B,)`` (before scaling)."""

    def logits_from_cosines(self, cos: Tensor, labels: Tensor | None) -> Tensor:
        """Scaled logits ``(B, num_classes)``, with the margin on the labelled class."""
        if labels is None:
            return self.scale * cos
        index = labels.unsqueeze(1)
        target = self.target_logit(cos.gather(1, index))
        return self.scale * cos.scatter(1, index, target)

    def forward(self, emb: Tensor, labels: Tensor | None = None) -> Tensor:
        """``emb (B, D)``, ``labels (B,)`` int64 or None -> logits ``(B, num_classes)``."""
        _check_inputs(emb, labels, self.embed_dim, self.num_classes)
        return self.logits_from_cosines(self.cosines(emb), labels)

    def prototypes(self) -> Tensor:
        """Length-normalised class weights ``(num_classes, D)``."""
        return F.normalize(self.weight, dim=1)


@HEADS.register("am")
class AdditiveMarginHead(_CosineHead):
    """Additive margin softmax (AM-softmax / CosFace): ``s * (cos - m)`` on the true class."""

    def __init__(self, embed_dim: int, num_classes: int, margin: float, scale: float) -> None:
        super().__init__(embed_dim, num_classes, margin, scale, subcenters=1)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        return cos_target - self.margin


def arc_margin(cos_target: Tensor, margin: float, easy_margin: bool) -> Tensor:
    """ArcFace target logit ``cos(theta + m)`` from ``cos(theta)`` ``(B,)`` (before scaling).

    Where ``theta + m`` would pass ``pi`` (``cos <= th = cos(pi - m)``) it falls back to
    ``cos - m sin(m)``, which keeps decreasing in ``theta``; with ``easy_margin`` the margin is
    only applied where ``cos > 0``.
    """
    sine = torch.sqrt((1.0 - cos_target * cos_target).clamp(min=_SQRT_EPS, max=1.0))
    phi = cos_target * math.cos(margin) - sine * math.sin(margin)
    if easy_margin:
        return torch.where(cos_target > 0, phi, cos_target)
    threshold = math.cos(math.pi - margin)
    fallback = cos_target - math.sin(math.pi - margin) * margin
    return torch.where(cos_target > threshold, phi, fallback)


@HEADS.register("aam")
class AdditiveAngularMarginHead(_CosineHead):
    """Additive angular margin (ArcFace): ``s * cos(theta + m)`` on the true class.

    See :func:`arc_margin` for the ``easy_margin`` option and the ``th`` fallback.
    """

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        margin: float,
        scale: float,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embed_dim, num_classes, margin, scale, subcenters=1)
        self.easy_margin = easy_margin

    def target_logit(self, cos_target: Tensor) -> Tensor:
        return arc_margin(cos_target, self.margin, self.easy_margin)


def _nearest_counts(sub: Tensor, labels: Tensor) -> Tensor:
    """Per class, how many samples are nearest to each of its sub-centers ``(C, K)``.

    ``sub`` holds the sub-center cosines ``(B, C, K)``, ``labels`` the classes ``(B,)``.
    """
    nearest = sub[torch.arange(sub.shape[0], device=sub.device), labels].argmax(dim=1)
    counts = torch.zeros(sub.shape[1], sub.shape[2], dtype=sub.dtype, device=sub.device)
    ones = torch.ones_like(nearest, dtype=sub.dtype)
    return counts.index_put_((labels, nearest), ones, accumulate=True)


@HEADS.register("sc_aam")
class SubCenterAAMHead(_CosineHead):
    """Sub-center ArcFace (Deng et al. 2020): ``K`` sub-centers per class, max cosine, then AAM.

    In training (with labels) the head counts, per class, which sub-center each sample was
    closest to (buffer ``center_counts``, saved with the weights); the most used one is the
    class's dominant sub-center. With ``subcenters=1`` it equals ``aam``.
    """

    center_counts: Tensor

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        margin: float,
        scale: float,
        subcenters: int = 2,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embed_dim, num_classes, margin, scale, subcenters=subcenters)
        self.easy_margin = easy_margin
        self.register_buffer("center_counts", torch.zeros(num_classes, subcenters))

    def target_logit(self, cos_target: Tensor) -> Tensor:
        return arc_margin(cos_target, self.margin, self.easy_margin)

    def forward(self, emb: Tensor, labels: Tensor | None = None) -> Tensor:
        """``emb (B, D)``, ``labels (B,)`` int64 or None -> logits ``(B, num_classes)``."""
        _check_inputs(emb, labels, self.embed_dim, self.num_classes)
        sub = self.subcenter_cosines(emb)
        if labels is not None and self.training:
            with torch.no_grad():
                self.center_counts.add_(_nearest_counts(sub.detach(), labels))
        cos = sub.squeeze(2) if self.subcenters == 1 else sub.amax(dim=2)
        return self.logits_from_cosines(cos, labels)

    def dominant_index(self, emb: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Index ``(num_classes,)`` of each class's dominant sub-center.

        From ``emb (N, D)`` and ``labels (N,)`` when given (the own-class sub-center nearest to
        most samples, as in the paper), else from the counts gathered in training. A class
        without samples gets sub-center 0.
        """
        if (emb is None) != (labels is None):
            raise ValueError("give both emb and labels, or neither")
        counts = self.center_counts
        if emb is not None and labels is not None:
            _check_inputs(emb, labels, self.embed_dim, self.num_classes)
            with torch.no_grad():
                counts = _nearest_counts(self.subcenter_cosines(emb), labels)
        return counts.argmax(dim=1)

    def dominant_centers(self, emb: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Weights ``(num_classes, D)`` of each class's dominant sub-center (not normalised)."""
        index = self.dominant_index(emb, labels)
        weight = self.weight.view(self.num_classes, self.subcenters, self.embed_dim)
        return weight[torch.arange(self.num_classes, device=index.device), index]

    def prototypes(self) -> Tensor:
        """Length-normalised dominant sub-centers ``(num_classes, D)``."""
        return F.normalize(self.dominant_centers(), dim=1)


def build_head(
    name: str,
    embed_dim: int,
    num_classes: int,
    margin: float,
    scale: float,
    args: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build a registered head; ``args`` holds its extra options (``subcenters``, ...).

    Raises:
        KeyError: unknown head name (the message lists the valid names).
        TypeError: unknown option; the message names the head and the key.
    """
    fixed = {"embed_dim": embed_dim, "num_classes": num_classes, "margin": margin, "scale": scale}
    extra = dict(args or {})
    clash = sorted(set(fixed) & set(extra))
    if clash:
        raise TypeError(f"head option(s) {clash} are arguments of build_head; remove them")
    head: nn.Module = build_component(HEADS, name, {**fixed, **extra})
    return head
