"""ONNX Runtime inference for an exported model's embedder (the part with parameters).

``embedder.onnx`` in a model folder maps ``feats`` (B, T, F) float32 and ``lengths`` (B,) int64
(valid frames) to ``embeddings`` (B, D), with dynamic batch and frame axes. Features are still
computed by the torch front end (cheap, no parameters). The file records the model id it was
exported from, so a stale export (weights retrained since) is never used. ONNX Runtime runs
these small convolutional nets about 1.5-2x faster than torch eager on one CPU thread.

    wildvox export-onnx --model runs/shipped/model
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

ONNX_FILE = "embedder.onnx"
_MODEL_ID_KEY = "wildvox_model_id"


class OnnxExportError(RuntimeError):
    """The embedder could not be exported, or its export does not match eager outputs."""


def export_embedder(
    embedder: nn.Module, feat_dim: int, model_id: str, model_dir: Path, atol: float = 1e-3
) -> Path:
    """Write ``model_dir/embedder.onnx`` and check it against eager on a padded batch.

    Raises:
        OnnxExportError: export failed or ONNX Runtime disagrees with eager by more than
            ``atol`` on any embedding value.
    """
    import onnx

    path = Path(model_dir) / ONNX_FILE
    tmp = path.with_name(path.name + ".tmp")
    embedder.eval()
    example = (torch.randn(2, 200, feat_dim), torch.tensor([200, 130]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks, traced as-is
            torch.onnx.export(
                embedder,
                example,
                str(tmp),
                input_names=["feats", "lengths"],
                output_names=["embeddings"],
                dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}},
                dynamo=False,
            )
    except Exception as exc:  # torch.onnx raises many types; report them as one
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"ONNX export of the embedder failed: {exc}") from exc
    graph = onnx.load(str(tmp))
    entry = graph.metadata_props.add()
    entry.key, entry.value = _MODEL_ID_KEY, model_id
    onnx.save(graph, str(tmp))
    runner = OnnxEmbedder(tmp, threads=1)
    feats, lengths = torch.randn(3, 317, feat_dim), torch.tensor([317, 95, 240])
    with torch.inference_mode():
        expected = embedder(feats, lengths).numpy()
    diff = float(np.abs(runner(feats.numpy(), lengths.numpy()) - expected).max())
    if diff > atol:
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"ONNX Runtime differs from eager by {diff:.2e} (> {atol})")
    tmp.replace(path)
    logger.info("wrote %s (max abs diff to eager %.1e)", path, diff)
    return path


class OnnxEmbedder:
    """An ONNX Runtime session over ``embedder.onnx``; ``threads`` intra-op threads."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors are not exported types
            raise ValueError(f"{path}: not a loadable ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.model_id = meta.get(_MODEL_ID_KEY, "")

    def __call__(self, feats: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``feats`` (B, T, F) float32, ``lengths`` (B,) valid frames -> (B, D) float32."""
        inputs = {
            "feats": np.ascontiguousarray(feats, dtype=np.float32),
            "lengths": np.ascontiguousarray(lengths, dtype=np.int64),
        }
        (out,) = self.session.run(None, inputs)
        return np.asarray(out, dtype=np.float32)


def load_onnx_embedder(model_dir: Path, model_id: str, threads: int = 1) -> OnnxEmbedder | None:
    """The folder's ONNX embedder when it exists and was exported from ``model_id``, else None
    (a stale export is ignored with a warning)."""
    path = Path(model_dir) / ONNX_FILE
    if not path.is_file():
        return None
    runner = OnnxEmbedder(path, threads)
    if runner.model_id != model_id:
        logger.warning(
            "%s was exported from model %s, not %s: ignored (run `wildvox export-onnx`)",
            path, runner.model_id or "?", model_id,
        )  # fmt: skip
        return None
    return runner
