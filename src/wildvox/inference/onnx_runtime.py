"""ONNX Runtime inference for an exported model's embedder (the part with parameters).

``embedder.onnx`` in a model folder maps ``feats`` (B, T, F) float32 and ``lengths`` (B,) int64
(valid frames) to ``embeddings`` (B, D), with dynamic batch and frame axes. Features are still
computed by the torch front end (cheap, no parameters). ONNX Runtime runs these small
convolutional nets about 1.5-2x faster than torch eager on one CPU thread.

The export is tied to the weights: ``model.json`` records, under ``extra["onnx"]``, the file's
sha256 and the model id it was exported from (and the file itself carries the id). At load,
an ``embedder.onnx`` without that record, from another model id, or whose bytes do not hash to
the record (edited, replaced, truncated) is never run: :func:`load_onnx_embedder` ignores it
with a logged warning, so ``load_model(backend="auto")`` falls back to the torch embedder (same
weights, same embeddings) and ``backend="onnx"`` refuses the folder. Export again to fix it.

    wildvox export-onnx --model runs/shipped/model
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wildvox.data.files import atomic_path
from wildvox.inference.model_io import META, read_meta, update_model_extra
from wildvox.registry import optional_import

logger = logging.getLogger(__name__)

ONNX_FILE = "embedder.onnx"
ONNX_RECORD = "onnx"
"""Key of the export record (``sha256``, ``model_id``) in ``model.json`` ``extra``."""
_MODEL_ID_KEY = "wildvox_model_id"


class OnnxExportError(RuntimeError):
    """The embedder could not be exported, or its export does not match eager outputs."""


def export_embedder(
    embedder: nn.Module, feat_dim: int, model_id: str, model_dir: Path, atol: float = 1e-3
) -> Path:
    """Write ``model_dir/embedder.onnx``, check it against eager on a padded batch, and record
    its digest in the folder's ``model.json`` (:func:`record_onnx_export`).

    Raises:
        OnnxExportError: export failed or ONNX Runtime disagrees with eager by more than
            ``atol`` on any embedding value.
    """
    onnx = optional_import("onnx", "export", "export-onnx")
    path = Path(model_dir) / ONNX_FILE
    embedder.eval()
    example = (torch.randn(2, 200, feat_dim), torch.tensor([200, 130]))
    with atomic_path(path) as tmp:  # removed on any error below; the old file is kept
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks
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
            raise OnnxExportError(f"ONNX Runtime differs from eager by {diff:.2e} (> {atol})")
    record_onnx_export(model_dir, model_id)
    logger.info("wrote %s (max abs diff to eager %.1e)", path, diff)
    return path


def record_onnx_export(model_dir: Path, model_id: str) -> dict[str, str]:
    """Record the sha256 of ``model_dir/embedder.onnx`` and ``model_id`` (the weights it was
    exported from) in ``model.json`` ``extra["onnx"]``; returns the record.

    Only for a file just exported from (or checked against) those weights: the record is what
    makes :func:`load_onnx_embedder` trust the file.
    """
    path = Path(model_dir) / ONNX_FILE
    runner = OnnxEmbedder(path, threads=1)
    if runner.model_id != model_id:
        raise OnnxExportError(f"{path} was exported from model {runner.model_id or '?'}, "
                              f"not {model_id}; export it again")  # fmt: skip
    record = {"sha256": runner.sha256, "model_id": model_id}
    update_model_extra(Path(model_dir), ONNX_RECORD, record)
    return record


def quantize_embedder(onnx_path: Path, out_path: Path) -> Path:
    """An int8 copy of an exported embedder (ONNX Runtime dynamic quantisation: weights int8,
    activations quantised on the fly), written atomically to ``out_path``; its accuracy and
    speed against the float32 export are measured by ``bench/onnx_int8.py``."""
    quantization = optional_import("onnxruntime.quantization", "export", "int8 export")
    with atomic_path(out_path) as tmp:
        quantization.quantize_dynamic(
            str(onnx_path), str(tmp), weight_type=quantization.QuantType.QInt8
        )
    return Path(out_path)


class OnnxEmbedder:
    """An ONNX Runtime session over ``embedder.onnx``; ``threads`` intra-op threads.

    The session is built from the bytes that were hashed, so ``sha256`` is the digest of what
    runs (no window for the file to change between the check and the load).
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
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


def _ignored(path: Path, why: str) -> None:
    logger.warning("%s %s: ignored, the torch embedder runs instead (run `wildvox export-onnx` "
                   "to export it again)", path, why)  # fmt: skip


def load_onnx_embedder(model_dir: Path, model_id: str, threads: int = 1) -> OnnxEmbedder | None:
    """The folder's ONNX embedder when it is the recorded export of ``model_id``, else None.

    None when there is no ``embedder.onnx``; also, with a logged warning, when ``model.json``
    has no export record for it, the record or the file names another model id (a stale
    export), or the file's sha256 differs from the record (an edited or replaced file).

    Raises:
        ValueError: the recorded file is not a loadable ONNX model.
        wildvox.inference.model_io.ModelFileError: unreadable ``model.json``.
    """
    path = Path(model_dir) / ONNX_FILE
    if not path.is_file():
        return None
    record: Any = read_meta(model_dir)["extra"].get(ONNX_RECORD)
    if not isinstance(record, dict) or not {"sha256", "model_id"} <= set(record):
        _ignored(path, f"has no export record in {META}")
        return None
    if record["model_id"] != model_id:
        _ignored(path, f"was exported from model {record['model_id']}, not {model_id}")
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != record["sha256"]:
        _ignored(path, f"was changed after export (sha256 {digest[:16]}..., {META} records "
                       f"{str(record['sha256'])[:16]}...)")  # fmt: skip
        return None
    runner = OnnxEmbedder(path, threads)
    if runner.sha256 != record["sha256"] or runner.model_id != model_id:  # changed meanwhile
        _ignored(path, f"changed while loading or carries model id {runner.model_id or '?'}")
        return None
    return runner
