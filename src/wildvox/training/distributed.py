"""Distributed data-parallel training: process-group set-up, global BatchNorm, sharded draws.

``torchrun --nproc_per_node=N -m wildvox.cli.main train ...`` starts N processes; each calls
:func:`init_from_env` (gloo on CPU, nccl on CUDA) and trains a
:class:`~torch.nn.parallel.DistributedDataParallel` copy of the model on its share of every
global batch. Rank 0 logs, checkpoints and exports.

Why BatchNorm needs care: DDP averages gradients, which makes N processes with batch ``B / N``
each equal to one process with batch ``B`` *only if* each sample's forward pass is the same in
both. BatchNorm normalises with statistics of the batch it sees, so per-process BN would use
``B / N``-sample statistics (different outputs and gradients, and per-rank running
statistics). :func:`convert_batchnorm` replaces BN by a version whose training statistics are
computed over the global batch (``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm`
on CPU, where SyncBatchNorm is not supported), so the two runs agree up to float rounding.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

if TYPE_CHECKING:  # the augment package is heavy; worker processes need not import it
    from wildvox.augment.specaugment import SpecAugment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process' place in the job: ``rank`` of ``world_size``, ``local_rank`` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> DistContext:
        """The context of the initialised process group, else a single process."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return cls(dist.get_rank(), dist.get_world_size(), local)


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1).

    Uses nccl when training on CUDA (``device`` ``auto`` with a GPU, or ``cuda``) and gloo
    otherwise; on CUDA each process takes GPU ``LOCAL_RANK``. Without ``WORLD_SIZE`` (a plain
    run) nothing is initialised and a single-process context is returned.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return DistContext.current()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed support")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    ctx = DistContext.current()
    logger.info("process %d of %d joined (%s)", ctx.rank, ctx.world_size, backend)
    return ctx


def shutdown() -> None:
    """Leave the process group, if one was initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over processes in place (no-op in a single process); returns it."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _global_sum(x: Tensor) -> Tensor:
    """Differentiable sum over processes: the backward pass sums the gradients likewise."""
    world = dist.group.WORLD
    if world is None:
        raise RuntimeError("no default process group: call init_from_env first")
    summed = collectives.all_reduce(x, "sum", world)
    return collectives.wait_tensor(summed)


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics cover the batch of every process (CPU-capable).

    Same parameters, buffers and state-dict keys as ``BatchNorm1d/2d``; in eval mode, or
    without an initialised multi-process group, it is plain batch norm. Statistics are computed
    in two passes (mean, then the mean squared deviation) through differentiable all-reduces,
    so the gradient is that of the global-batch loss.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        """``input (B, C, *)`` -> same shape."""
        self._check_input_dim(input)
        multi = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and multi):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype)
        total = _global_sum(torch.cat([input.sum(dims), count.to(input.device)]))
        n = total[-1]
        mean = total[:-1] / n
        centred = input - mean.view(shape)
        var = _global_sum(centred.square().sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(unbiased.detach(), factor)
        return out


def convert_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every ``BatchNorm1d/2d/3d`` in ``module`` by a global-batch version.

    CUDA: ``torch.nn.SyncBatchNorm``; other devices: :class:`GlobalBatchNorm`. Parameters and
    buffers are carried over, so the state-dict keys do not change. Returns the new module.
    """
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            new.weight = module.weight
            new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replacement = convert_batchnorm(child, device_type)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


def shard_spec_augment(
    spec: SpecAugment,
    feats: Tensor,
    generator: torch.Generator,
    ctx: DistContext,
) -> Tensor:
    """SpecAugment ``feats (b, T, F)``, this rank's rows of a ``(b * world_size)`` global batch.

    Masks are drawn for the whole global batch from ``generator`` (the same on every rank) and
    each rank keeps its contiguous share, so N processes mask exactly as one process with the
    global batch would, and the generator advances identically everywhere.
    """
    if not spec.training:
        return feats
    if not ctx.distributed:
        return spec(feats, generator=generator)
    batch = feats.shape[0]
    full = feats[:1].expand(batch * ctx.world_size, -1, -1)
    time_mask, freq_mask = spec.masks(full, generator)
    rows = slice(ctx.rank * batch, (ctx.rank + 1) * batch)
    mask = time_mask[rows, :, None] | freq_mask[rows, None, :]
    mean = feats.mean(dim=(1, 2), keepdim=True)
    return torch.where(mask, mean.expand_as(feats), feats)


def resolve_device(name: str, ctx: DistContext | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; distributed CUDA runs take GPU ``local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and ctx is not None and ctx.distributed:
        device = torch.device("cuda", ctx.local_rank)
    return device


class EmbedAndClassify(nn.Module):
    """Features ``(B, T, F)`` + labels ``(B,)`` -> margin logits ``(B, classes)`` and the
    embeddings ``(B, D)``: the part of the model with parameters, which DistributedDataParallel
    wraps."""

    def __init__(self, embedder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder
        self.head = head

    def forward(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        embeddings: Tensor = self.embedder(feats)
        logits: Tensor = self.head(embeddings, labels)
        return logits, embeddings


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``model`` itself, or in a DistributedDataParallel wrapper when ``ctx`` is distributed.

    Buffers are not broadcast from rank 0 at every forward pass: global BatchNorm keeps the
    running statistics equal on every rank, and counters go through :func:`sync_increments`.
    """
    if not ctx.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def sync_increments(buffer: Tensor, before: Tensor) -> None:
    """Make ``buffer = before + sum over ranks of (buffer - before)`` (counters such as the
    sub-center AAM head's ``center_counts``, which each rank updates with its own samples)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    delta = all_reduce_sum(buffer.detach() - before)
    with torch.no_grad():
        buffer.copy_(before + delta)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    inner = getattr(module, "module", module)
    assert isinstance(inner, nn.Module)
    return inner


__all__ = [
    "DistContext",
    "EmbedAndClassify",
    "GlobalBatchNorm",
    "all_reduce_sum",
    "barrier",
    "convert_batchnorm",
    "init_from_env",
    "resolve_device",
    "shard_spec_augment",
    "shutdown",
    "sync_increments",
    "unwrap",
    "wrap_model",
]
