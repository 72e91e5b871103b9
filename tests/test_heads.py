"""Classification heads: shapes, margins against hand-computed values, and known identities."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wildvox.models import build_head
from wildvox.models.heads import SubCenterAAMHead
from wildvox.registry import HEADS

D, C = 6, 5
OPTIONS: dict[str, dict[str, Any]] = {
    "softmax": {},
    "am": {},
    "aam": {"easy_margin": False},
    "sc_aam": {"subcenters": 3},
}


def _head(name: str, margin: float = 0.2, scale: float = 10.0, **args: Any) -> nn.Module:
    torch.manual_seed(0)
    return build_head(name, embed_dim=D, num_classes=C, margin=margin, scale=scale, args=args)


def _scaled_cosines(emb: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    return scale * F.normalize(emb, dim=1) @ F.normalize(weight.detach(), dim=1).T


def test_every_registered_head_is_tested() -> None:
    assert set(HEADS.names()) <= set(OPTIONS), "add the new head to OPTIONS"


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_shapes_prototypes_and_gradients(name: str) -> None:
    head = _head(name, **OPTIONS[name])
    emb = torch.randn(4, D, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 4])
    assert head(emb).shape == (4, C)
    logits = head(emb, labels)
    assert logits.shape == (4, C) and torch.isfinite(logits).all()
    F.cross_entropy(logits, labels).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters())
    protos = head.prototypes()
    assert protos.shape == (C, D)
    torch.testing.assert_close(protos.norm(dim=1), torch.ones(C))
    assert isinstance(head.margin, float) and isinstance(head.scale, float)


def test_aam_with_zero_margin_is_scaled_cosine_softmax() -> None:
    aam = _head("aam", margin=0.0, scale=12.0)
    am = _head("am", margin=0.0, scale=12.0)
    am.load_state_dict(aam.state_dict())
    emb, labels = torch.randn(7, D), torch.randint(0, C, (7,))
    expected = _scaled_cosines(emb, aam.weight, 12.0)
    torch.testing.assert_close(aam(emb, labels), expected)
    torch.testing.assert_close(am(emb, labels), expected)
    torch.testing.assert_close(aam(emb), expected)


def test_margins_match_hand_computed_values() -> None:
    margin, scale = 0.3, 10.0
    aam = _head("aam", margin=margin, scale=scale)
    am = _head("am", margin=margin, scale=scale)
    am.load_state_dict(aam.state_dict())
    emb, labels = torch.randn(6, D), torch.tensor([0, 1, 2, 3, 4, 0])
    cos = _scaled_cosines(emb, aam.weight, 1.0)
    rows = torch.arange(6)
    with torch.no_grad():
        aam_logits, am_logits = aam(emb, labels), am(emb, labels)
    for i, label in enumerate(labels.tolist()):
        theta = math.acos(float(cos[i, label]))
        if theta + margin < math.pi:
            expected = scale * math.cos(theta + margin)
        else:
            expected = scale * (float(cos[i, label]) - math.sin(math.pi - margin) * margin)
        assert float(aam_logits[i, label]) == pytest.approx(expected, abs=1e-4)
        assert float(am_logits[i, label]) == pytest.approx(scale * (cos[i, label] - margin))
    other = torch.ones_like(cos, dtype=torch.bool)
    other[rows, labels] = False
    torch.testing.assert_close(aam_logits[other], scale * cos[other])
    torch.testing.assert_close(am_logits[other], scale * cos[other])


def test_aam_threshold_fallback_and_easy_margin() -> None:
    margin, scale = 0.5, 4.0
    hard = _head("aam", margin=margin, scale=scale)
    easy = _head("aam", margin=margin, scale=scale, easy_margin=True)
    easy.load_state_dict(hard.state_dict())
    target = F.normalize(hard.weight[2].detach(), dim=0)
    other = torch.randn(D)
    other = F.normalize(other - (other @ target) * target, dim=0)  # orthogonal to the target
    emb = torch.stack([c * target + math.sqrt(1 - c * c) * other for c in (-0.99, -0.3)])
    labels = torch.tensor([2, 2])
    cos = _scaled_cosines(emb, hard.weight, 1.0)[:, 2]
    assert cos[0] < math.cos(math.pi - margin) < cos[1] < 0
    fallback = scale * (cos[0] - math.sin(math.pi - margin) * margin)
    arc = scale * torch.cos(torch.acos(cos[1]) + margin)
    torch.testing.assert_close(hard(emb, labels)[:, 2], torch.stack([fallback, arc]))
    torch.testing.assert_close(easy(emb, labels)[:, 2], scale * cos)  # cos < 0: no margin


def test_margin_and_scale_are_mutable() -> None:
    head = _head("aam", margin=0.1, scale=15.0)
    emb, labels = torch.randn(3, D), torch.tensor([0, 1, 2])
    before = head(emb, labels)
    head.margin, head.scale = 0.0, 20.0
    torch.testing.assert_close(head(emb, labels), _scaled_cosines(emb, head.weight, 20.0))
    assert not torch.allclose(before, head(emb, labels))


def test_subcenter_aam_with_one_center_equals_aam() -> None:
    aam = _head("aam", margin=0.2, scale=30.0)
    sc = _head("sc_aam", margin=0.2, scale=30.0, subcenters=1)
    with torch.no_grad():
        sc.weight.copy_(aam.weight)
    emb, labels = torch.randn(8, D), torch.randint(0, C, (8,))
    torch.testing.assert_close(sc(emb, labels), aam(emb, labels))
    torch.testing.assert_close(sc(emb), aam(emb))
    torch.testing.assert_close(sc.prototypes(), aam.prototypes())


def test_subcenter_aam_takes_the_nearest_subcenter() -> None:
    sc = _head("sc_aam", margin=0.0, scale=1.0, subcenters=2)
    assert isinstance(sc, SubCenterAAMHead)
    emb = torch.randn(4, D)
    weight = sc.weight.detach().view(C, 2, D)
    expected = torch.maximum(
        _scaled_cosines(emb, weight[:, 0], 1.0), _scaled_cosines(emb, weight[:, 1], 1.0)
    )
    torch.testing.assert_close(sc(emb), expected)


def test_dominant_centers_from_training_counts_and_from_data() -> None:
    sc = _head("sc_aam", subcenters=2)
    assert isinstance(sc, SubCenterAAMHead)
    weight = sc.weight.detach().view(C, 2, D)
    # Samples of class 1 sit on its sub-center 1; class 0 on its sub-center 0.
    emb = torch.cat([weight[1, 1].expand(3, D), weight[0, 0].expand(2, D)])
    labels = torch.tensor([1, 1, 1, 0, 0])
    from_data = sc.dominant_index(emb, labels)
    assert from_data[:2].tolist() == [0, 1]
    assert sc.center_counts.sum() == 0
    sc.eval()(emb, labels)  # eval: no counting
    assert sc.center_counts.sum() == 0
    sc.train()(emb, labels)
    assert sc.center_counts[1].tolist() == [0.0, 3.0] and sc.center_counts[0].tolist() == [2, 0]
    torch.testing.assert_close(sc.dominant_centers()[:2], torch.stack([weight[0, 0], weight[1, 1]]))
    torch.testing.assert_close(sc.prototypes()[1], F.normalize(weight[1, 1], dim=0))
    with pytest.raises(ValueError, match="both"):
        sc.dominant_index(emb, None)


def test_softmax_head_is_a_linear_layer() -> None:
    head = _head("softmax")
    emb = torch.randn(3, D)
    torch.testing.assert_close(head(emb, torch.tensor([0, 1, 2])), head.linear(emb))


def test_build_head_errors() -> None:
    with pytest.raises(KeyError, match="valid names: aam, am, sc_aam, softmax"):
        build_head("arcface", D, C, 0.2, 30.0)
    with pytest.raises(TypeError, match="'sub_centers'"):
        build_head("sc_aam", D, C, 0.2, 30.0, args={"sub_centers": 2})
    with pytest.raises(TypeError, match="margin"):
        build_head("aam", D, C, 0.2, 30.0, args={"margin": 0.3})
    head = _head("aam")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        head(torch.randn(2, D), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="embeddings"):
        head(torch.randn(2, D + 1))
    with pytest.raises(ValueError, match="scale"):
        build_head("am", D, C, 0.2, 0.0)
