"""LR and margin schedules, and the optimiser's parameter groups."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch
from torch import nn

from wildvox.config import load_config
from wildvox.models.heads import build_head
from wildvox.training.schedulers import (
    LR_SCHEDULES,
    MARGIN_SCHEDULES,
    build_lr_schedule,
    build_margin_schedule,
    build_optimizer,
)


def torch_cyclic(mode: str, min_lr: float, max_lr: float, half: int, steps: int) -> list[float]:
    """torch.optim.lr_scheduler.CyclicLR's learning rates: an independent implementation."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=min_lr, max_lr=max_lr, step_size_up=half, mode=mode, cycle_momentum=False
    )
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("policy", ["triangular2", "triangular"])
def test_cyclic_matches_torch(policy: str) -> None:
    sched = build_lr_schedule(
        "cyclic", lr=1e-3, args={"min_lr": 1e-8, "cycle_iters": 10, "policy": policy}
    )
    ours = [sched.lr_at(s) for s in range(47)]
    theirs = torch_cyclic(policy, 1e-8, 1e-3, half=5, steps=47)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)
    peaks = [ours[5], ours[15], ours[25]]
    if policy == "triangular2":  # the amplitude halves every cycle
        assert peaks == pytest.approx([1e-3, 1e-8 + (1e-3 - 1e-8) / 2, 1e-8 + (1e-3 - 1e-8) / 4])
    else:
        assert peaks == pytest.approx([1e-3] * 3)
    assert min(ours) == pytest.approx(1e-8)


def test_warmup_exponential_by_hand() -> None:
    sched = build_lr_schedule(
        "warmup_exp",
        lr=1e-3,
        args={"final_lr": 1e-5, "decay_iters": 100, "warmup_iters": 10},
    )
    expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 1e-4, 110: 1e-5, 500: 1e-5}
    for step, lr in expected.items():
        assert sched.lr_at(step) == pytest.approx(lr, rel=1e-12, abs=1e-18), step
    lrs = [sched.lr_at(s) for s in range(10, 111)]
    assert all(a > b for a, b in itertools.pairwise(lrs))  # strictly decaying


def test_constant_lr_and_margin() -> None:
    assert {build_lr_schedule("constant", lr=0.1).lr_at(s) for s in (0, 7, 10**6)} == {0.1}
    assert build_margin_schedule("constant", margin=0.2, scale=30.0).at(123) == (0.2, 30.0)


def test_margin_ramp_with_and_without_scale() -> None:
    ramp = build_margin_schedule(
        "ramp", margin=0.5, scale=30.0, args={"start_iter": 10, "end_iter": 30}
    )
    assert ramp.at(0) == (0.0, 30.0) and ramp.at(10) == (0.0, 30.0)
    assert ramp.at(20) == pytest.approx((0.25, 30.0))
    assert ramp.at(30) == (0.5, 30.0) and ramp.at(1000) == (0.5, 30.0)
    both = build_margin_schedule(
        "ramp",
        margin=0.15,
        scale=20.0,
        args={"end_iter": 4, "initial_margin": 0.1, "initial_scale": 15.0},
    )
    values = [v for step in (0, 2, 4) for v in both.at(step)]
    assert values == pytest.approx([0.1, 15.0, 0.125, 17.5, 0.15, 20.0])


def test_apply_sets_optimizer_and_head_and_state_round_trips() -> None:
    head = build_head("aam", embed_dim=4, num_classes=3, margin=0.2, scale=30.0)
    opt = torch.optim.Adam(
        [{"params": [nn.Parameter(torch.zeros(2))]}, {"params": head.parameters()}], lr=1.0
    )
    lr = build_lr_schedule("cyclic", lr=1e-3, args={"min_lr": 0.0, "cycle_iters": 4})
    assert lr.apply(opt, 1) == pytest.approx(5e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-4, 5e-4])
    margin = build_margin_schedule("ramp", margin=0.2, scale=30.0, args={"end_iter": 4})
    assert margin.apply(head, 2) == pytest.approx((0.1, 30.0))
    assert head.margin == pytest.approx(0.1) and head.scale == 30.0
    logits = head(torch.randn(2, 4), torch.tensor([0, 1]))  # the head uses the new margin
    assert logits.shape == (2, 3)

    fresh = build_lr_schedule("cyclic", lr=1e-3, args={"min_lr": 0.0, "cycle_iters": 4})
    fresh.load_state_dict(lr.state_dict())
    assert (fresh.last_step, fresh.last_lr) == (1, pytest.approx(5e-4))
    fresh_margin = build_margin_schedule("ramp", margin=0.2, scale=30.0, args={"end_iter": 4})
    fresh_margin.load_state_dict(margin.state_dict())
    assert fresh_margin.last_value == pytest.approx((0.1, 30.0))


def test_a_changed_schedule_on_resume_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    old = build_lr_schedule("constant", lr=1e-3)
    old.apply(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 5)
    new = build_lr_schedule("constant", lr=1e-4)
    with caplog.at_level(logging.WARNING):
        new.load_state_dict(old.state_dict())
    assert "differs from the checkpoint" in caplog.text


def test_bad_names_options_and_values() -> None:
    with pytest.raises(KeyError, match="valid names: constant, cyclic, warmup_exp"):
        build_lr_schedule("onecycle", lr=1e-3)
    with pytest.raises(TypeError, match=r"lr_scheduler_args for 'cyclic'.*cycle_lenght"):
        build_lr_schedule("cyclic", lr=1e-3, args={"cycle_lenght": 10})
    with pytest.raises(TypeError, match="margin_scheduler_args"):
        build_margin_schedule("ramp", margin=0.2, scale=30.0, args={"end": 3})
    with pytest.raises(ValueError, match="even number"):
        build_lr_schedule("cyclic", lr=1e-3, args={"cycle_iters": 7})
    with pytest.raises(ValueError, match="min_lr"):
        build_lr_schedule("cyclic", lr=1e-3, args={"cycle_iters": 8, "min_lr": 1e-2})
    with pytest.raises(ValueError, match="policy"):
        build_lr_schedule("cyclic", lr=1e-3, args={"cycle_iters": 8, "policy": "exp_range"})
    with pytest.raises(ValueError, match="start_iter < end_iter"):
        build_margin_schedule("ramp", margin=0.2, scale=30.0, args={"end_iter": 0})
    assert set(LR_SCHEDULES.names()) == {"constant", "cyclic", "warmup_exp"}
    assert set(MARGIN_SCHEDULES.names()) == {"constant", "ramp"}


def test_recipe_keys_reach_the_schedules() -> None:
    cfg = load_config(
        None,
        [
            "train.lr_scheduler=cyclic",
            "train.lr_scheduler_args={min_lr: 1.0e-8, cycle_iters: 130000}",
            "train.margin_scheduler=ramp",
            "train.margin_scheduler_args={end_iter: 1000}",
        ],
    )
    t = cfg.train
    sched = build_lr_schedule(t.lr_scheduler, t.lr, t.lr_scheduler_args)
    assert sched.lr_at(65000) == pytest.approx(1e-3) and sched.lr_at(130000) == pytest.approx(1e-8)
    ramp = build_margin_schedule(
        t.margin_scheduler, cfg.head.margin, cfg.head.scale, t.margin_scheduler_args
    )
    assert ramp.at(500) == pytest.approx((cfg.head.margin / 2, cfg.head.scale))


def test_optimizer_weight_decay_per_group() -> None:
    net, head = nn.Linear(3, 2), nn.Linear(2, 4)
    cfg = load_config(None, ["train.weight_decay=2.0e-5", "train.head_weight_decay=2.0e-4"])
    opt = build_optimizer(cfg.train, net, head)
    assert isinstance(opt, torch.optim.Adam)
    decays = [g["weight_decay"] for g in opt.param_groups]
    assert decays == [2e-5, 2e-4]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    same = build_optimizer(load_config(None, ["train.optimizer=sgd"]).train, net, head)
    assert isinstance(same, torch.optim.SGD)
    assert [g["weight_decay"] for g in same.param_groups] == [2e-5, 2e-5]
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        build_optimizer(load_config(None, ["train.optimizer=lamb"]).train, net, head)


def test_head_decay_acts_on_the_head_only() -> None:
    """With zero gradients, the first Nesterov SGD step (momentum 0.9) shrinks each group by
    ``lr * (1 + 0.9) * weight_decay``."""
    net, head = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    for p in (*net.parameters(), *head.parameters()):
        nn.init.constant_(p, 1.0)
        p.grad = torch.zeros_like(p)
    cfg = load_config(
        None,
        [
            "train.optimizer=sgd",
            "train.lr=0.1",
            "train.weight_decay=0.01",
            "train.head_weight_decay=0.1",
        ],
    )
    build_optimizer(cfg.train, net, head).step()
    assert math.isclose(float(net.weight[0, 0].detach()), 1 - 0.1 * 1.9 * 0.01, rel_tol=1e-6)
    assert math.isclose(float(head.weight[0, 0].detach()), 1 - 0.1 * 1.9 * 0.1, rel_tol=1e-6)
