"""Contract tests for the LAS-MHA and EfficientNetV2 backbones, plus their own identities.

The same checks as ``test_models_contract.py`` (shapes and ``output_lengths``, padded batch ==
each utterance alone, gradients reach every parameter, torch.export and ONNX match eager), on
tiny configurations, and: parameter counts equal to the reference implementations, the masked
self-attention equals ``nn.MultiheadAttention``, stochastic depth only in training.
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
from wildvox.models.backbones.efficientnet_v2 import EfficientNetV2, drop_path, round_channels
from wildvox.models.backbones.las_mha import LASMHA, SelfMultiHeadAttention

FEAT_DIM = 16
EMBED_DIM = 8


def _calibrate_norms(model: Embedder) -> None:
    """Set BatchNorm statistics from one training-mode pass, then random affine parameters.

    Default-initialised deep nets shrink their activations layer by layer, so a padding leak
    could hide below the tolerance; with calibrated statistics every layer sees O(1) values.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration pass
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.train()(torch.randn(4, 40, FEAT_DIM, generator=generator))
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5, generator=generator)
            norm.bias.uniform_(-0.2, 0.2, generator=generator)
    model.eval()


def _embedder(case: str, seed: int = 0, **overrides: Any) -> Embedder:
    cfg = ZOO[case]
    torch.manual_seed(seed)
    return build_embedder(
        feat_dim=FEAT_DIM,
        backbone=cfg["backbone"],
        pooling=cfg["pooling"],
        embed_dim=EMBED_DIM,
        backbone_args={**cfg["backbone_args"], **overrides},
        pooling_args=cfg["pooling_args"],
    )


@pytest.mark.parametrize("name", sorted(ZOO))
def test_backbone_shapes_and_output_lengths(name: str) -> None:
    model = _embedder(name).eval()
    backbone = model.backbone
    for frames in (1, 23, 40):
        out = backbone(torch.randn(2, frames, FEAT_DIM))
        assert out.dim() == 3 and out.shape[:2] == (2, backbone.out_channels)
        assert int(backbone.output_lengths(torch.tensor([frames]))) == out.shape[2]
    emb = model(torch.randn(1, 23, FEAT_DIM))
    assert emb.shape == (1, EMBED_DIM)


def test_output_frame_rates() -> None:
    las = LASMHA(FEAT_DIM, channels=[2], lstm_hidden=4, lstm_layers=1, time_pool=3)
    assert las(torch.randn(1, 31, FEAT_DIM)).shape == (1, 8, 11)  # ceil(31 / 3)
    las1 = LASMHA(FEAT_DIM, channels=[2], lstm_hidden=4, lstm_layers=1, time_pool=1)
    assert las1(torch.randn(1, 31, FEAT_DIM)).shape[2] == 31
    net = EfficientNetV2(80, size="tiny", width_mult=0.25)
    # tiny: stem + 3 strided stages halve F and T 4 times: 80 -> 5 bins, 200 -> 13 frames.
    assert net(torch.randn(1, 200, 80)).shape == (1, net.out_channels, 13)
    assert net.out_channels == round_channels(256 * 0.25) * 5


@pytest.mark.parametrize("name", sorted(ZOO))
def test_padded_batch_equals_unpadded(name: str) -> None:
    model = _embedder(name).eval()
    _calibrate_norms(model)
    assert_padded_equals_unpadded(model, [37, 22, 5], FEAT_DIM, pads=[0.0, 5.0, -3.0])


@pytest.mark.parametrize("name", sorted(ZOO))
def test_gradients_reach_every_parameter(name: str) -> None:
    model = _embedder(name).train()
    assert_gradients_reach_every_parameter(model, ZOO[name], FEAT_DIM, EMBED_DIM)


# nn.LSTM makes torch.export specialise on the number of frames, so LAS-MHA is exported with a
# static frame count; EfficientNetV2 with a dynamic one (at least 2 output frames in the example,
# or export specialises on T' = 1).
@pytest.mark.parametrize(
    ("name", "frames"), [("las_mha-pool3-mha", None), ("efficientnet_v2-tiny", (40, 75))]
)
def test_torch_export_matches_eager(name: str, frames: tuple[int, int] | None) -> None:
    model = _embedder(name).eval()
    _calibrate_norms(model)
    example_frames, test_frames = frames or (30, 30)
    example = (torch.randn(2, example_frames, FEAT_DIM), torch.tensor([example_frames, 17]))
    shapes = ({1: torch.export.Dim.AUTO}, None) if frames else None
    exported = torch.export.export(model, example, dynamic_shapes=shapes).module()
    feats, lengths = torch.randn(2, test_frames, FEAT_DIM), torch.tensor([test_frames, 26])
    with torch.no_grad():
        expected = model(feats, lengths)
    torch.testing.assert_close(exported(feats, lengths), expected, atol=1e-4, rtol=0)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
@pytest.mark.parametrize("name", ["las_mha", "efficientnet_v2-tiny"])
def test_onnx_export_matches_eager(name: str, tmp_path: Path) -> None:
    model = _embedder(name).eval()
    _calibrate_norms(model)
    assert_onnx_matches_eager(model, FEAT_DIM, tmp_path / f"{name}.onnx")


@pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
@pytest.mark.parametrize("name", ["las_mha", "efficientnet_v2-tiny"])
def test_onnx_export_cosine_on_wildmix_features(name: str, tmp_path: Path, wildmix: Path) -> None:
    model = _embedder(name).eval()
    _calibrate_norms(model)
    assert_onnx_cosine_on_wildmix(model, FEAT_DIM, wildmix, tmp_path / "embedder.onnx")


def test_self_attention_equals_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = SelfMultiHeadAttention(16, num_heads=8)
    ref = torch.nn.MultiheadAttention(16, 8, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 9, 16)
    valid = torch.tensor([[True] * 9, [True] * 4 + [False] * 5])
    expected, _ = ref(x, x, x, key_padding_mask=~valid, need_weights=False)
    got = ours(x, valid)
    # nn.MultiheadAttention's fast path may zero padded query rows; compare the valid ones.
    torch.testing.assert_close(got[valid], expected[valid], atol=1e-5, rtol=1e-5)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_reference_implementations() -> None:
    with torch.device("meta"):
        # torchvision efficientnet_v2_s: 21,458,488 parameters; minus the 1280 -> 1000
        # classifier (1,281,000) and the stem weights of 2 of its 3 input channels (2 * 24 * 9).
        assert _count(EfficientNetV2(80, size="s")) == 21_458_488 - 1_281_000 - 432
        # timm tf_efficientnetv2_b0: 7,139,704; minus classifier and 2 * 32 * 9 stem weights.
        assert _count(EfficientNetV2(80, size="b0")) == 7_139_704 - 1_281_000 - 576
        # LAS-MHA = 2 convs + BLSTM stack + attention, counted with torch's own modules.
        las = LASMHA(80, channels=(32, 32), lstm_hidden=256, lstm_layers=3, num_heads=8)
        ref = torch.nn.ModuleList(
            [
                torch.nn.Conv2d(1, 32, 3, bias=False),
                torch.nn.BatchNorm2d(32),
                torch.nn.Conv2d(32, 32, 3, bias=False),
                torch.nn.BatchNorm2d(32),
                torch.nn.LSTM(32 * 20, 256, num_layers=3, bidirectional=True),
                torch.nn.MultiheadAttention(512, 8),
            ]
        )
    assert _count(las) == _count(ref)


def test_stochastic_depth_only_in_training() -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 3, 2, 2)
    dropped = drop_path(x, 0.5, training=True)
    per_sample = dropped.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # whole samples, rescaled by 1/keep
    assert bool((per_sample.min(1).values == per_sample.max(1).values).all())
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    model = _embedder("efficientnet_v2-b0", drop_path_rate=0.5)
    feats = torch.randn(4, 30, FEAT_DIM)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(feats), model(feats))
        model.train()
        torch.manual_seed(1)
        first = model(feats)
        torch.manual_seed(2)
        assert not torch.allclose(first, model(feats))


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_heads 3 must divide"):
        LASMHA(FEAT_DIM, lstm_hidden=8, num_heads=3)
    with pytest.raises(ValueError, match="channels must be"):
        LASMHA(FEAT_DIM, channels=[])
    with pytest.raises(ValueError, match="size must be one of"):
        EfficientNetV2(FEAT_DIM, size="m")
    with pytest.raises(ValueError, match="drop_path_rate"):
        EfficientNetV2(FEAT_DIM, drop_path_rate=1.0)
    with pytest.raises(TypeError, match="backbone 'las_mha' has no option 'heads'"):
        build_embedder(FEAT_DIM, "las_mha", "tap", EMBED_DIM, {"heads": 8})
    with pytest.raises(TypeError, match="backbone 'efficientnet_v2' has no option 'width'"):
        build_embedder(FEAT_DIM, "efficientnet_v2", "tap", EMBED_DIM, {"width": 0.5})
    with pytest.raises(ValueError, match=rf"\(B, T, {FEAT_DIM}\)"):
        LASMHA(FEAT_DIM, channels=[2], lstm_hidden=4, lstm_layers=1)(torch.randn(1, 9, 3))
