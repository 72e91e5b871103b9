"""Optimiser, learning-rate and margin schedules, chosen by name from
:class:`~wildvox.config.TrainConfig`.

Every schedule is a pure function of the optimiser step (the number of updates done so far), so
the step counter saved in a checkpoint restores it exactly; ``state_dict`` records the last
value applied, for the log and a consistency check on resume.

LR schedules (``train.lr_scheduler`` + ``train.lr_scheduler_args``; ``train.lr`` is the peak):

- ``constant``: ``lr`` at every step.
- ``cyclic``: cyclical LR (Smith, WACV 2017) between ``min_lr`` and ``lr``, ``cycle_iters``
  updates per full cycle (up + down), starting at ``min_lr``; ``policy="triangular2"`` halves
  the amplitude every cycle (IDLab VoxSRC-20: 1e-8 .. 1e-3, 130k iterations), ``"triangular"``
  keeps it (IDLab's pseudo-label stage: "the maximum CLR learning rate does not decay").
- ``warmup_exp``: linear warm-up from ``warmup_start_lr`` to ``lr`` over ``warmup_iters``
  updates, then exponential decay to ``final_lr`` over ``decay_iters`` updates (WeSpeaker).

Margin schedules (``train.margin_scheduler`` + ``train.margin_scheduler_args``; the final
values are ``head.margin`` and ``head.scale``):

- ``constant``: the head keeps ``head.margin`` / ``head.scale``.
- ``ramp``: linear ramp from ``initial_margin`` (and ``initial_scale``, when given) at
  ``start_iter`` to the final values at ``end_iter``.

    >>> sched = build_lr_schedule("cyclic", lr=1e-3, args={"min_lr": 0.0, "cycle_iters": 4})
    >>> [sched.lr_at(s) for s in range(9)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0, 0.00025, 0.0005, 0.00025, 0.0]
    >>> ramp = build_margin_schedule("ramp", margin=0.2, scale=30.0, args={"end_iter": 10})
    >>> ramp.at(5)
    (0.1, 30.0)
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from wildvox.config import TrainConfig
from wildvox.registry import Registry

logger = logging.getLogger(__name__)

LR_SCHEDULES: Registry[LRSchedule] = Registry("lr scheduler")
MARGIN_SCHEDULES: Registry[MarginSchedule] = Registry("margin scheduler")

CYCLIC_POLICIES = ("triangular", "triangular2")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


class LRSchedule(abc.ABC):
    """A learning rate for every optimiser step; applied to all parameter groups."""

    def __init__(self) -> None:
        self.last_step = -1
        self.last_lr = float("nan")

    @abc.abstractmethod
    def lr_at(self, step: int) -> float:
        """The learning rate of update ``step`` (0-based: the number of updates done)."""

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the learning rate of every parameter group for update ``step``; returns it."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.last_step, self.last_lr = step, lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "last_lr": self.last_lr}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self.last_lr = float(state["last_lr"])
        if self.last_step >= 0 and not math.isclose(self.lr_at(self.last_step), self.last_lr):
            logger.warning(
                "the LR schedule differs from the checkpoint's: step %d had lr %.3g, now %.3g",
                self.last_step, self.last_lr, self.lr_at(self.last_step),
            )  # fmt: skip


@LR_SCHEDULES.register("constant")
class ConstantLR(LRSchedule):
    """``lr`` at every step."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        _check_non_negative("lr", lr)
        self.lr = float(lr)

    def lr_at(self, step: int) -> float:
        return self.lr


@LR_SCHEDULES.register("cyclic")
class CyclicLR(LRSchedule):
    """Cyclical LR with the triangular or triangular2 policy (Smith 2017).

    ``cycle_iters`` is the length of one full cycle (``2 * stepsize`` in Smith's notation): the
    LR rises linearly from ``min_lr`` to the cycle's peak over the first half and falls back
    over the second. The peak is ``lr`` in the first cycle; with ``triangular2`` the amplitude
    ``lr - min_lr`` is halved every cycle. The IDLab report gives a "cycle length of 130k
    iterations" without saying whether that is one ramp or up + down; we read it as the full
    cycle, Smith's definition.
    """

    def __init__(
        self,
        lr: float,
        cycle_iters: int,
        min_lr: float = 1e-8,
        policy: str = "triangular2",
    ) -> None:
        super().__init__()
        _check_non_negative("min_lr", min_lr)
        if lr < min_lr:
            raise ValueError(f"the peak lr {lr} must be >= min_lr {min_lr}")
        if cycle_iters < 2 or cycle_iters % 2:
            raise ValueError(f"cycle_iters must be an even number >= 2, got {cycle_iters}")
        if policy not in CYCLIC_POLICIES:
            raise ValueError(f"policy must be one of {CYCLIC_POLICIES}, got {policy!r}")
        self.lr = float(lr)
        self.min_lr = float(min_lr)
        self.cycle_iters = cycle_iters
        self.policy = policy

    def lr_at(self, step: int) -> float:
        half = self.cycle_iters // 2
        cycle = step // self.cycle_iters
        x = abs(step / half - 2 * cycle - 1)  # 1 at the cycle's start and end, 0 at its peak
        amplitude = self.lr - self.min_lr
        if self.policy == "triangular2":
            amplitude /= 2.0**cycle
        return self.min_lr + amplitude * max(0.0, 1.0 - x)


@LR_SCHEDULES.register("warmup_exp")
class WarmupExponentialLR(LRSchedule):
    """Linear warm-up to ``lr`` over ``warmup_iters`` steps, then exponential decay.

    After the warm-up the LR is ``lr * (final_lr / lr) ** (t / decay_iters)`` for
    ``t = step - warmup_iters``, and ``final_lr`` from ``t = decay_iters`` on.
    """

    def __init__(
        self,
        lr: float,
        final_lr: float,
        decay_iters: int,
        warmup_iters: int = 0,
        warmup_start_lr: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive("lr", lr)
        _check_positive("final_lr", final_lr)
        _check_non_negative("warmup_start_lr", warmup_start_lr)
        if decay_iters < 1 or warmup_iters < 0:
            raise ValueError(
                f"decay_iters must be >= 1 and warmup_iters >= 0, got {decay_iters}, {warmup_iters}"
            )
        self.lr = float(lr)
        self.final_lr = float(final_lr)
        self.decay_iters = decay_iters
        self.warmup_iters = warmup_iters
        self.warmup_start_lr = float(warmup_start_lr)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_iters:
            return self.warmup_start_lr + (self.lr - self.warmup_start_lr) * (
                step / self.warmup_iters
            )
        t = min(step - self.warmup_iters, self.decay_iters) / self.decay_iters
        return self.lr * (self.final_lr / self.lr) ** t


class MarginSchedule(abc.ABC):
    """The head's ``(margin, scale)`` for every optimiser step."""

    def __init__(self) -> None:
        self.last_step = -1
        self.last_value = (float("nan"), float("nan"))

    @abc.abstractmethod
    def at(self, step: int) -> tuple[float, float]:
        """``(margin, scale)`` of update ``step`` (0-based)."""

    def apply(self, head: nn.Module, step: int) -> tuple[float, float]:
        """Set ``head.margin`` and ``head.scale`` for update ``step``; returns them."""
        margin, scale = self.at(step)
        setattr(head, "margin", margin)  # noqa: B010  (nn.Module types attributes as tensors)
        setattr(head, "scale", scale)  # noqa: B010
        self.last_step, self.last_value = step, (margin, scale)
        return margin, scale

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "last_value": list(self.last_value)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        margin, scale = state["last_value"]
        self.last_value = (float(margin), float(scale))


@MARGIN_SCHEDULES.register("constant")
class ConstantMargin(MarginSchedule):
    """The configured margin and scale at every step."""

    def __init__(self, margin: float, scale: float) -> None:
        super().__init__()
        _check_non_negative("margin", margin)
        _check_positive("scale", scale)
        self.margin = float(margin)
        self.scale = float(scale)

    def at(self, step: int) -> tuple[float, float]:
        return self.margin, self.scale


@MARGIN_SCHEDULES.register("ramp")
class MarginRamp(MarginSchedule):
    """Linear ramp of the margin (and optionally the scale) between two steps.

    Before ``start_iter`` the values are ``initial_margin`` / ``initial_scale``; from
    ``end_iter`` on they are the final ``margin`` / ``scale``. ``initial_scale=None`` keeps the
    scale fixed at ``scale``.
    """

    def __init__(
        self,
        margin: float,
        scale: float,
        end_iter: int,
        start_iter: int = 0,
        initial_margin: float = 0.0,
        initial_scale: float | None = None,
    ) -> None:
        super().__init__()
        _check_non_negative("margin", margin)
        _check_non_negative("initial_margin", initial_margin)
        _check_positive("scale", scale)
        if initial_scale is not None:
            _check_positive("initial_scale", initial_scale)
        if start_iter < 0 or end_iter <= start_iter:
            raise ValueError(
                f"need 0 <= start_iter < end_iter, got start_iter={start_iter}, end_iter={end_iter}"
            )
        self.margin = float(margin)
        self.scale = float(scale)
        self.start_iter = start_iter
        self.end_iter = end_iter
        self.initial_margin = float(initial_margin)
        self.initial_scale = float(scale if initial_scale is None else initial_scale)

    def at(self, step: int) -> tuple[float, float]:
        t = (step - self.start_iter) / (self.end_iter - self.start_iter)
        t = min(max(t, 0.0), 1.0)
        margin = self.initial_margin + (self.margin - self.initial_margin) * t
        scale = self.initial_scale + (self.scale - self.initial_scale) * t
        return margin, scale


def build_lr_schedule(name: str, lr: float, args: Mapping[str, Any] | None = None) -> LRSchedule:
    """The LR schedule registered as ``name`` with peak/constant ``lr`` and its ``args``.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        TypeError: an option the schedule does not take.
    """
    try:
        return LR_SCHEDULES.build(name, lr=lr, **dict(args or {}))
    except TypeError as exc:
        raise TypeError(f"train.lr_scheduler_args for {name!r}: {exc}") from exc


def build_margin_schedule(
    name: str, margin: float, scale: float, args: Mapping[str, Any] | None = None
) -> MarginSchedule:
    """The margin schedule ``name`` ending at ``margin`` / ``scale``, with its ``args``."""
    try:
        return MARGIN_SCHEDULES.build(name, margin=margin, scale=scale, **dict(args or {}))
    except TypeError as exc:
        raise TypeError(f"train.margin_scheduler_args for {name!r}: {exc}") from exc


def build_optimizer(t: TrainConfig, net: nn.Module, head: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD (Nesterov, momentum 0.9) with separate weight decay for network and head
    (IDLab: 2e-5 on the network, 2e-4 on the AAM-softmax layer)."""
    head_decay = t.weight_decay if t.head_weight_decay is None else t.head_weight_decay
    params = [
        {"params": list(net.parameters()), "weight_decay": t.weight_decay},
        {"params": list(head.parameters()), "weight_decay": head_decay},
    ]
    if t.optimizer == "sgd":  # train.optimizer is checked at config load: adam or sgd
        return torch.optim.SGD(params, lr=t.lr, momentum=0.9, nesterov=True)
    return torch.optim.Adam(params, lr=t.lr)
