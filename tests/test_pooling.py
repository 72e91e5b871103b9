"""Pooling layers: shapes, masking of padded frames, and the uniform-attention identities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from wildvox.models import build_component
from wildvox.models.pooling import length_mask, weighted_stats
from wildvox.registry import POOLINGS

IN_DIM = 16

# One or more option sets per registered pooling (tiny sizes).
CONFIGS: dict[str, list[dict[str, Any]]] = {
    "tap": [{}],
    "tstp": [{}],
    "sap": [{"attention_dim": 8}],
    "asp": [{"attention_dim": 8}],
    "cas": [
        {"attention_dim": 8, "global_context": True, "activation": "relu"},
        {"attention_dim": 8, "global_context": False, "activation": "tanh"},
    ],
    "mha": [{"num_heads": 4}],
}
CASES = [(name, opts) for name, configs in CONFIGS.items() for opts in configs]


def _build(name: str, **opts: Any) -> nn.Module:
    pool: nn.Module = build_component(POOLINGS, name, {"in_dim": IN_DIM, **opts})
    return pool.eval()


def test_every_registered_pooling_is_tested() -> None:
    assert set(POOLINGS.names()) <= set(CONFIGS), "add a tiny config for the new pooling"


@pytest.mark.parametrize(("name", "opts"), CASES)
def test_shape_and_out_dim(name: str, opts: dict[str, Any]) -> None:
    pool = _build(name, **opts)
    out = pool(torch.randn(3, IN_DIM, 11))
    assert out.shape == (3, pool.out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "opts"), CASES)
def test_padded_batch_equals_unpadded(name: str, opts: dict[str, Any]) -> None:
    torch.manual_seed(0)
    pool = _build(name, **opts)
    lengths = torch.tensor([13, 7])
    x = torch.randn(2, IN_DIM, 13)
    x[1, :, 7:] = 1e3  # padding content must not matter
    with torch.no_grad():
        batched = pool(x, lengths)
        alone = [pool(x[i : i + 1, :, : int(n)]) for i, n in enumerate(lengths)]
    torch.testing.assert_close(batched, torch.cat(alone), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "opts"), CASES)
def test_gradient_reaches_input_and_parameters(name: str, opts: dict[str, Any]) -> None:
    pool = _build(name, **opts).train()
    x = torch.randn(2, IN_DIM, 9, requires_grad=True)
    pool(x, torch.tensor([9, 5])).square().sum().backward()
    assert x.grad is not None and x.grad[0].abs().sum() > 0
    assert x.grad[1, :, 5:].abs().sum() == 0  # padded frames get no gradient
    for pname, param in pool.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


def test_tap_and_tstp_match_numpy() -> None:
    x = torch.randn(2, IN_DIM, 10, dtype=torch.float64)
    lengths = torch.tensor([10, 4])
    tap = _build("tap").double()(x, lengths).numpy()
    tstp = _build("tstp").double()(x, lengths).numpy()
    for i, n in enumerate(lengths.tolist()):
        frames = x[i, :, :n].numpy()
        np.testing.assert_allclose(tap[i], frames.mean(axis=1), rtol=1e-10)
        np.testing.assert_allclose(tstp[i, :IN_DIM], frames.mean(axis=1), rtol=1e-10)
        np.testing.assert_allclose(tstp[i, IN_DIM:], frames.std(axis=1), rtol=1e-6)


def _zero(*modules: nn.Module) -> None:
    with torch.no_grad():
        for module in modules:
            for param in module.parameters():
                param.zero_()


@pytest.mark.parametrize(
    ("name", "opts", "reference"),
    [
        ("sap", {"attention_dim": 8}, "tap"),
        ("asp", {"attention_dim": 8}, "tstp"),
        ("cas", {"global_context": True, "activation": "relu"}, "tstp"),
        ("cas", {"global_context": False, "activation": "tanh"}, "tstp"),
        ("mha", {"num_heads": 4}, "tap"),
    ],
)
def test_uniform_attention_equals_plain_pooling(
    name: str, opts: dict[str, Any], reference: str
) -> None:
    pool = _build(name, **opts)
    if name in ("sap", "asp"):
        _zero(pool.attention.score)
    elif name == "cas":
        _zero(pool.score)
    else:
        _zero(pool)
    x = torch.randn(2, IN_DIM, 12)
    lengths = torch.tensor([12, 6])
    expected = _build(reference)(x, lengths)
    torch.testing.assert_close(pool(x, lengths), expected, atol=1e-6, rtol=1e-5)


def test_attention_is_not_uniform_once_trained_weights_differ() -> None:
    """The identity above is not vacuous: random attention weights differ from the mean."""
    torch.manual_seed(1)
    x = torch.randn(2, IN_DIM, 12)
    sap = _build("sap", attention_dim=8)
    assert not torch.allclose(sap(x), _build("tap")(x), atol=1e-4)


def test_weighted_stats_and_mask() -> None:
    mask = length_mask(torch.tensor([3, 1]), 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    x = torch.tensor([[[1.0, 3.0]]])
    mean, std = weighted_stats(x, torch.tensor([[[0.5, 0.5]]]))
    assert mean.item() == pytest.approx(2.0) and std.item() == pytest.approx(1.0)


def test_bad_options_and_inputs() -> None:
    with pytest.raises(TypeError, match="'heads'"):
        build_component(POOLINGS, "mha", {"in_dim": IN_DIM, "heads": 4})
    with pytest.raises(KeyError, match=r"valid names: .*sap"):
        build_component(POOLINGS, "nope", {"in_dim": IN_DIM})
    with pytest.raises(ValueError, match="divisible"):
        _build("mha", num_heads=5)
    with pytest.raises(ValueError, match="activation"):
        _build("cas", activation="gelu")
    with pytest.raises(ValueError, match=r"\(B, 16, T\)"):
        _build("tap")(torch.randn(2, 8, 5))
