"""Checks and tiny configurations shared by the model contract tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wildvox.models import build_head

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))

# Tiny configurations of the LAS-MHA and EfficientNetV2 backbones (tests/test_models_zoo.py)
# by test id: backbone (+ options), pooling (+ options), head (+ options).
# The paper trains LAS-MHA with sub-center AAM and EfficientNetV2 with softmax, both with TAP.
ZOO: dict[str, dict[str, Any]] = {
    "las_mha": {
        "backbone": "las_mha",
        "backbone_args": {"channels": [4, 4], "lstm_hidden": 8, "lstm_layers": 2},
        "pooling": "tap",
        "pooling_args": {},
        "head": "sc_aam",
        "head_args": {"subcenters": 2},
    },
    "las_mha-pool3-mha": {
        "backbone": "las_mha",
        "backbone_args": {"channels": [3], "lstm_hidden": 4, "lstm_layers": 1, "time_pool": 3},
        "pooling": "mha",
        "pooling_args": {"num_heads": 2},
        "head": "aam",
        "head_args": {},
    },
    "efficientnet_v2-tiny": {
        "backbone": "efficientnet_v2",
        "backbone_args": {"size": "tiny", "width_mult": 0.25, "depth_mult": 0.5},
        "pooling": "tap",
        "pooling_args": {},
        "head": "softmax",
        "head_args": {},
    },
    "efficientnet_v2-b0": {
        "backbone": "efficientnet_v2",
        "backbone_args": {"size": "b0", "width_mult": 0.25, "depth_mult": 0.3},
        "pooling": "tap",
        "pooling_args": {},
        "head": "softmax",
        "head_args": {},
    },
}


def assert_onnx_matches_eager(model: nn.Module, feat_dim: int, path: Path) -> None:
    """Export ``model`` (feats, lengths) -> embeddings to ONNX with dynamic batch and frames,
    run it in onnxruntime on another shape, and compare with eager (max abs diff 1e-4)."""
    import onnxruntime as ort

    torch.onnx.export(
        model,
        (torch.randn(2, 30, feat_dim), torch.tensor([30, 17])),
        str(path),
        input_names=["feats", "lengths"],
        output_names=["embeddings"],
        dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}},
        dynamo=False,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feats, lengths = torch.randn(3, 41, feat_dim), torch.tensor([41, 19, 33])
    (onnx_out,) = session.run(None, {"feats": feats.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected = model(feats, lengths)
    torch.testing.assert_close(torch.from_numpy(onnx_out), expected, atol=1e-4, rtol=0)


def assert_padded_equals_unpadded(
    model: nn.Module, lengths: list[int], feat_dim: int, pads: list[float]
) -> None:
    """A padded batch (row ``i`` padded with the constant ``pads[i]`` after ``lengths[i]``
    frames) gives each row the embedding it gets alone and unpadded."""
    feats = torch.randn(len(lengths), max(lengths), feat_dim)
    for i, (n, pad) in enumerate(zip(lengths, pads, strict=True)):
        feats[i, n:] = pad  # padding content must not leak into the valid frames
    with torch.no_grad():
        batched = model(feats, torch.tensor(lengths))
        alone = torch.cat([model(feats[i : i + 1, :n]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def assert_gradients_reach_every_parameter(
    model: nn.Module, cfg: dict[str, Any], feat_dim: int, embed_dim: int
) -> None:
    """One margin-softmax step on a padded batch gives every parameter of the embedder and of
    the head ``cfg["head"]`` (``cfg["head_args"]``) a finite, non-zero gradient."""
    head = build_head(cfg["head"], embed_dim, 3, margin=0.2, scale=10.0, args=cfg["head_args"])
    feats = torch.randn(3, 29, feat_dim)
    labels = torch.tensor([0, 1, 2])
    F.cross_entropy(head(model(feats, torch.tensor([29, 20, 25])), labels), labels).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, pname
    assert all(p.grad is not None for p in head.parameters())


def assert_onnx_cosine_on_wildmix(
    model: nn.Module, feat_dim: int, wildmix: Path, path: Path
) -> None:
    """Export ``model`` with dynamic batch and frames (on a shorter batch than the one run),
    then run it in ONNX Runtime on the fbank of three real wildmix utterances of different
    lengths: cosine to the eager embeddings > 0.9999 for each."""
    import numpy as np

    from wildvox.audio.features import Fbank
    from wildvox.audio.io import load_audio
    from wildvox.inference.onnx_runtime import OnnxEmbedder

    files = sorted((wildmix / "wav" / "gcast-xandru-osuna").rglob("*.opus"))[:3]
    waves = [torch.from_numpy(load_audio(f)) for f in files]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    feats, frames = Fbank(n_mels=feat_dim)(batch, lengths)
    torch.onnx.export(
        model, (feats[:2, :50], frames[:2].clamp(max=50)), str(path),
        input_names=["feats", "lengths"], output_names=["embeddings"],
        dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}},
        dynamo=False,
    )  # fmt: skip
    got = OnnxEmbedder(path)(feats.numpy(), frames.numpy())
    with torch.no_grad():
        want = model(feats, frames).numpy()
    cos = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.9999, cos
