"""Contract tests for every registered backbone with a compatible pooling and head.

Each backbone gets a tiny configuration below; a newly registered backbone must add one.
Checked: shapes and ``output_lengths``; a padded batch equals each utterance alone; gradients
reach every parameter; torch.export and ONNX (when installed) match eager; the published
parameter counts; registry errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from model_checks import (
    HAS_ONNX,
    ZOO,
    assert_gradients_reach_every_parameter,
    assert_onnx_cosine_on_wildmix,
    assert_onnx_matches_eager,
    assert_padded_equals_unpadded,
)

from wildvox.models import Embedder, build_embedder
from wildvox.registry import BACKBONES

FEAT_DIM = 16
EMBED_DIM = 8

# Tiny configurations, by test id: backbone (+ options), its intended pooling (+ options),
# head (+ options). Every registered backbone needs at least one.
TINY: dict[str, dict[str, Any]] = {
    "resnet34_se": {
        "backbone": "resnet34_se",
        "backbone_args": {"base_channels": 4, "layers": [1, 1, 1, 1], "se_reduction": 2},
        "pooling": "sap",
        "pooling_args": {"attention_dim": 8},
        "head": "sc_aam",
        "head_args": {"subcenters": 2},
    },
    "se_resnet34": {
        "backbone": "se_resnet34",
        "backbone_args": {"base_channels": 4, "layers": [2, 1, 1, 1], "se_reduction": 2},
        "pooling": "cas",
        "pooling_args": {"attention_dim": 8, "global_context": True},
        "head": "aam",
        "head_args": {},
    },
    "ecapa_tdnn": {
        "backbone": "ecapa_tdnn",
        "backbone_args": {"channels": 16, "scale": 4, "se_bottleneck": 8, "mfa_channels": 24},
        "pooling": "cas",
        "pooling_args": {"attention_dim": 8, "global_context": True},
        "head": "aam",
        "head_args": {},
    },
    "ecapa_tdnn-blstm-dd": {
        "backbone": "ecapa_tdnn",
        "backbone_args": {
            "channels": 32,
            "num_blocks": 4,
            "se_bottleneck": 8,
            "mfa_channels": 48,
            "lstm_first": True,
            "lstm_hidden": 6,
            "dynamic_dilation": True,
        },
        "pooling": "cas",
        "pooling_args": {"attention_dim": 8, "global_context": True, "activation": "tanh"},
        "head": "sc_aam",
        "head_args": {"subcenters": 2},
    },
}
# Extra poolings run on the first backbone, so every pooling meets a real backbone once.
EXTRA_POOLINGS = ["tap", "tstp", "asp", "mha"]


def _embedder(case: str, pooling: str | None = None, seed: int = 0) -> Embedder:
    cfg = TINY[case]
    torch.manual_seed(seed)
    return build_embedder(
        feat_dim=FEAT_DIM,
        backbone=cfg["backbone"],
        pooling=pooling or cfg["pooling"],
        embed_dim=EMBED_DIM,
        backbone_args=cfg["backbone_args"],
        pooling_args=cfg["pooling_args"] if pooling is None else {},
    )


def _randomise_norms(model: torch.nn.Module) -> None:
    """Give BatchNorm layers non-trivial running statistics so eval mode is a real test."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)


CASES = [(name, None) for name in TINY] + [("resnet34_se", p) for p in EXTRA_POOLINGS]


def test_every_registered_backbone_has_a_tiny_config() -> None:
    # las_mha and efficientnet_v2 run the same contract checks in tests/test_models_zoo.py
    covered = {cfg["backbone"] for cfg in [*TINY.values(), *ZOO.values()]}
    missing = sorted(set(BACKBONES.names()) - covered)
    assert not missing, f"add tiny configs to TINY in tests/test_models_contract.py: {missing}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_backbone_shapes_and_output_lengths(name: str) -> None:
    model = _embedder(name).eval()
    backbone = model.backbone
    for frames in (23, 40):
        out = backbone(torch.randn(2, frames, FEAT_DIM))
        assert out.dim() == 3 and out.shape[:2] == (2, backbone.out_channels)
        assert int(backbone.output_lengths(torch.tensor([frames]))) == out.shape[2]
    emb = model(torch.randn(1, 23, FEAT_DIM))
    assert emb.shape == (1, EMBED_DIM) and model.embed_dim == EMBED_DIM


@pytest.mark.parametrize(("name", "pooling"), CASES)
def test_padded_batch_equals_unpadded(name: str, pooling: str | None) -> None:
    model = _embedder(name, pooling).eval()
    _randomise_norms(model)
    assert_padded_equals_unpadded(model, [37, 22], FEAT_DIM, pads=[0.0, 5.0])


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_reach_every_parameter(name: str) -> None:
    model = _embedder(name).train()
    assert_gradients_reach_every_parameter(model, TINY[name], FEAT_DIM, EMBED_DIM)


# torch.export is slow (seconds per model on our 2 shared cores), so it runs once per backbone
# class, with a dynamic number of frames only for the strided ResNet (the ONNX test below runs
# every configuration with dynamic batch and frame axes). se_resnet34 shares resnet34_se's
# code; with lstm_first, torch.export specialises on the number of frames (nn.LSTM).
@pytest.mark.parametrize(("name", "dynamic"), [("resnet34_se", True), ("ecapa_tdnn", False)])
def test_torch_export_matches_eager(name: str, dynamic: bool) -> None:
    model = _embedder(name).eval()
    _randomise_norms(model)
    example = (torch.randn(2, 30, FEAT_DIM), torch.tensor([30, 17]))
    shapes = ({1: torch.export.Dim.AUTO}, None) if dynamic else None
    exported = torch.export.export(model, example, dynamic_shapes=shapes).module()
    frames = 45 if dynamic else 30
    feats, lengths = torch.randn(2, frames, FEAT_DIM), torch.tensor([frames, 26])
    with torch.no_grad():
        expected = model(feats, lengths)
    torch.testing.assert_close(exported(feats, lengths), expected, atol=1e-4, rtol=0)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_export_matches_eager(name: str, tmp_path: Path) -> None:
    model = _embedder(name).eval()
    _randomise_norms(model)
    assert_onnx_matches_eager(model, FEAT_DIM, tmp_path / f"{name}.onnx")


def _count(backbone: str, pooling: str, embed_dim: int, **backbone_args: Any) -> int:
    with torch.device("meta"):
        model = build_embedder(80, backbone, pooling, embed_dim, backbone_args=backbone_args)
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_published_sizes() -> None:
    # "In the wild" ResNet34-SE (half width, SAP, 256-d): ~6.6 M, WeSpeaker's ResNet34 size.
    assert _count("resnet34_se", "sap", 256) == pytest.approx(6.6e6, rel=0.03)
    # ECAPA-TDNN with attentive statistics (global context), 192-d: 6.2 M and 14.7 M.
    assert _count("ecapa_tdnn", "cas", 192, channels=512) == pytest.approx(6.2e6, rel=0.03)
    assert _count("ecapa_tdnn", "cas", 192, channels=1024) == pytest.approx(14.7e6, rel=0.03)


def test_registry_errors_name_the_problem() -> None:
    with pytest.raises(KeyError, match=r"valid names: .*resnet34_se"):
        build_embedder(FEAT_DIM, "resnet99", "sap", EMBED_DIM)
    with pytest.raises(KeyError, match="unknown pooling 'avg'"):
        build_embedder(FEAT_DIM, "resnet34_se", "avg", EMBED_DIM)
    with pytest.raises(TypeError, match="backbone 'resnet34_se' has no option 'base_channel'"):
        build_embedder(FEAT_DIM, "resnet34_se", "sap", EMBED_DIM, {"base_channel": 8})
    with pytest.raises(TypeError, match="pooling 'sap' has no option 'heads'"):
        build_embedder(FEAT_DIM, "resnet34_se", "sap", EMBED_DIM, pooling_args={"heads": 2})
    with pytest.raises(TypeError, match="feat_dim"):
        build_embedder(FEAT_DIM, "resnet34_se", "sap", EMBED_DIM, {"feat_dim": 40})


def test_embedder_rejects_bad_input() -> None:
    model = _embedder("resnet34_se").eval()
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 20\]"):
        model(torch.randn(2, 20, FEAT_DIM), torch.tensor([20, 21]))
    with pytest.raises(ValueError, match="lengths must be"):
        model(torch.randn(2, 20, FEAT_DIM), torch.tensor([20]))
    with pytest.raises(ValueError, match=f"\\(B, T, {FEAT_DIM}\\)"):
        model(torch.randn(2, 20, FEAT_DIM + 1))


def test_ecapa_dilations_and_mfa_size() -> None:
    from wildvox.models.backbones.ecapa_tdnn import ECAPATDNN

    def dilations(net: ECAPATDNN) -> list[list[int]]:
        return [[int(c.conv.dilation[0]) for c in block.res2] for block in net.blocks]

    with torch.device("meta"):
        plain = ECAPATDNN(80, channels=512, num_blocks=4)
        dynamic = ECAPATDNN(80, channels=512, num_blocks=3, dynamic_dilation=True)
        large = ECAPATDNN(80, channels=2048, num_blocks=4, se_bottleneck=128)
    assert dilations(plain) == [[d] * 7 for d in (2, 3, 4, 5)]
    assert dilations(dynamic) == [[2, 3, 4, 5, 6, 2, 3]] * 3
    assert plain.out_channels == 1536 and large.out_channels == 3 * 2048
    with pytest.raises(ValueError, match="divide"):
        ECAPATDNN(80, channels=100, scale=8)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_export_cosine_on_wildmix_features(name: str, tmp_path: Path, wildmix: Path) -> None:
    """Every registered backbone (with the zoo test's two): ONNX export with dynamic batch and
    length gives the eager embeddings of real wildmix speech (#16.5)."""
    model = _embedder(name).eval()
    _randomise_norms(model)
    assert_onnx_cosine_on_wildmix(model, FEAT_DIM, wildmix, tmp_path / "embedder.onnx")
