"""Speaker embedder: backbone -> pooling -> Linear -> BatchNorm1d, and builders by name.

>>> import torch
>>> net = build_embedder(
...     feat_dim=16, backbone="resnet34_se", pooling="sap", embed_dim=8,
...     backbone_args={"base_channels": 4, "layers": [1, 1, 1, 1]},
... )
>>> net.eval()(torch.randn(2, 20, 16), torch.tensor([20, 13])).shape
torch.Size([2, 8])
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from wildvox.models import backbones as _backbones  # noqa: F401  (registers the backbones)
from wildvox.models import pooling as _pooling  # noqa: F401  (registers the poolings)
from wildvox.registry import BACKBONES, POOLINGS, Registry

logger = logging.getLogger(__name__)


def is_tracing() -> bool:
    """True while torch.export, torch.compile, TorchScript or ONNX tracing runs the model."""
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def build_component(registry: Registry[Any], name: str, options: Mapping[str, Any]) -> Any:
    """Instantiate ``registry[name](**options)``, rejecting unknown option names.

    Raises:
        KeyError: ``name`` is not registered (the message lists the valid names).
        TypeError: an option is not a parameter of the component, or a required one is
            missing; the message names the component and the key.
    """
    factory = registry.get(name)
    signature = inspect.signature(factory)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(key for key in options if key not in params)
    if unknown and not takes_any:
        valid = ", ".join(params) or "(none)"
        raise TypeError(
            f"{registry.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {valid}"
        )
    try:
        signature.bind(**options)
    except TypeError as err:
        raise TypeError(f"{registry.kind} {name!r}: {err}") from None
    return factory(**options)


def _merge(fixed: Mapping[str, Any], args: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    args = dict(args or {})
    clash = sorted(set(fixed) & set(args))
    if clash:
        raise TypeError(f"{what} option(s) {clash} are set by build_embedder; remove them")
    return {**fixed, **args}


class Embedder(nn.Module):
    """``(B, T, F)`` features -> ``(B, embed_dim)`` speaker embeddings.

    Pools the backbone output ``(B, C, T')`` over the valid frames, then applies a Linear
    layer and BatchNorm1d (as WeSpeaker and ECAPA-TDNN do).

    Args:
        backbone: a registered backbone (``out_channels``, ``output_lengths``).
        pooling: a pooling whose ``in_dim`` equals ``backbone.out_channels``.
        embed_dim: size of the embedding ``D``.
    """

    def __init__(self, backbone: nn.Module, pooling: nn.Module, embed_dim: int = 256) -> None:
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        out_channels = getattr(backbone, "out_channels", None)
        in_dim = getattr(pooling, "in_dim", out_channels)
        if not isinstance(out_channels, int) or in_dim != out_channels:
            raise ValueError(
                f"pooling expects {in_dim} channels but the backbone gives {out_channels}"
            )
        pooled_dim = getattr(pooling, "out_dim", None)
        if not isinstance(pooled_dim, int):
            raise ValueError(f"pooling {type(pooling).__name__} has no integer out_dim")
        self.backbone = backbone
        self.pooling = pooling
        self.embed_dim = embed_dim
        self.linear = nn.Linear(pooled_dim, embed_dim)
        self.norm = nn.BatchNorm1d(embed_dim)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``feats (B, T, F)``, ``lengths (B,)`` valid frames or None -> ``(B, embed_dim)``."""
        frame_lengths: Tensor | None = None
        if lengths is not None:
            if lengths.dim() != 1 or lengths.shape[0] != feats.shape[0]:
                raise ValueError(
                    f"lengths must be (B,) = ({feats.shape[0]},), got {tuple(lengths.shape)}"
                )
            if not is_tracing() and (
                bool((lengths < 1).any()) or bool((lengths > feats.shape[1]).any())
            ):
                raise ValueError(
                    f"lengths must lie in [1, {feats.shape[1]}] frames, got {lengths.tolist()}"
                )
            frame_lengths = cast(Any, self.backbone).output_lengths(lengths)
        frames = self.backbone(feats, lengths)
        pooled = self.pooling(frames, frame_lengths)
        embeddings: Tensor = self.norm(self.linear(pooled))
        return embeddings


def build_embedder(
    feat_dim: int,
    backbone: str,
    pooling: str,
    embed_dim: int,
    backbone_args: Mapping[str, Any] | None = None,
    pooling_args: Mapping[str, Any] | None = None,
) -> Embedder:
    """Build an :class:`Embedder` from registry names and plain option mappings.

    ``feat_dim`` goes to the backbone and the backbone's ``out_channels`` to the pooling as
    ``in_dim``; neither may appear in the option mappings.

    Raises:
        KeyError: unknown backbone or pooling name (the message lists the valid names).
        TypeError: unknown option; the message names the component and the key.
    """
    net = build_component(
        BACKBONES, backbone, _merge({"feat_dim": feat_dim}, backbone_args, "backbone")
    )
    pool = build_component(
        POOLINGS, pooling, _merge({"in_dim": net.out_channels}, pooling_args, "pooling")
    )
    model = Embedder(net, pool, embed_dim=embed_dim)
    logger.debug(
        "built %s + %s embedder: %d parameters",
        backbone,
        pooling,
        sum(p.numel() for p in model.parameters()),
    )
    return model
