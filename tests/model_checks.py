"""Checks shared by the model contract tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))


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
