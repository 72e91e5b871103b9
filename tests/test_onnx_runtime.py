"""ONNX Runtime inference: `wildvox export-onnx` adds embedder.onnx and records its digest,
load_model() uses it, it gives the eager model's embeddings, and a stale, edited or unrecorded
embedder.onnx is never run (#12.5)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from e2e_helpers import tiny_config
from onnx import numpy_helper
from typer.testing import CliRunner

from wildvox.api import load_model
from wildvox.cli.main import app
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.inference.model_io import (
    META,
    ModelFileError,
    export_model,
    load_exported,
    update_model_extra,
)
from wildvox.inference.onnx_runtime import (
    ONNX_FILE,
    ONNX_RECORD,
    OnnxExportError,
    record_onnx_export,
)
from wildvox.training.trainer import Trainer

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(wildmix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("onnx")
    cfg = tiny_config(wildmix, tmp, ["train.epochs=1"])
    model = Trainer(cfg, tmp / "run", load_corpus(cfg.dataset.train[0])).fit().model_dir
    result = runner.invoke(app, ["export-onnx", "--model", str(model)])
    assert result.exit_code == 0, result.output
    return model


def test_onnx_backend_matches_torch(model_dir: Path, wildmix: Path) -> None:
    files = sorted((wildmix / "wav" / "gcast-xandru-osuna").rglob("*.opus"))[:5]
    onnx = load_model(model_dir)
    torch_model = load_model(model_dir, backend="torch")
    assert (onnx.backend, torch_model.backend) == ("onnx", "torch")
    a = onnx.embed_batch(files, batch_size=3)  # padded batches of different lengths
    b = torch_model.embed_batch(files, batch_size=3)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(onnx.embed(files[0]), b[0], atol=1e-4)
    onnx.set_threads(2)
    assert onnx.onnx is not None and onnx.onnx.threads == 2
    np.testing.assert_allclose(onnx.embed(files[0]), b[0], atol=1e-4)


def test_export_records_the_onnx_digest_and_model_id(model_dir: Path) -> None:
    meta = json.loads((model_dir / META).read_text())
    digest = hashlib.sha256((model_dir / ONNX_FILE).read_bytes()).hexdigest()
    assert meta["extra"][ONNX_RECORD] == {"sha256": digest, "model_id": meta["model_id"]}


def test_edited_onnx_is_ignored_by_auto_and_refused_by_onnx(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    graph = onnx.load(str(copy / ONNX_FILE))
    weight = next(w for w in graph.graph.initializer if w.data_type == onnx.TensorProto.FLOAT)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 0.5, weight.name))
    onnx.save(graph, str(copy / ONNX_FILE))  # still carries the right model id
    with caplog.at_level(logging.WARNING, logger="wildvox.inference.onnx_runtime"):
        assert load_model(copy).backend == "torch"
    assert "embedder.onnx was changed after export" in caplog.text
    assert "run `wildvox export-onnx`" in caplog.text
    with pytest.raises(ModelFileError, match=f"no up-to-date {ONNX_FILE}.*export-onnx"):
        load_model(copy, backend="onnx")


def test_stale_onnx_of_retrained_weights_is_ignored(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    old = load_exported(copy)
    with torch.no_grad():  # as if retrained: new weights, new id; extra (with the record) kept
        next(old.net.parameters()).add_(0.01)
    new_id = export_model(copy, old.net, old.config, old.speakers, old.head_state, old.extra)
    assert new_id != old.model_id
    with caplog.at_level(logging.WARNING, logger="wildvox.inference.onnx_runtime"):
        assert load_model(copy).backend == "torch"
    assert f"was exported from model {old.model_id}, not {new_id}" in caplog.text
    with pytest.raises(ModelFileError, match="export-onnx"):
        load_model(copy, backend="onnx")
    with pytest.raises(OnnxExportError, match=f"exported from model {old.model_id}"):
        record_onnx_export(copy, new_id)  # a stale file cannot be blessed by hand
    result = runner.invoke(app, ["export-onnx", "--model", str(copy)])
    assert result.exit_code == 0, result.output
    assert load_model(copy, backend="onnx").backend == "onnx"


def test_unrecorded_or_broken_exports_are_not_used(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / META).read_text())
    del meta["extra"][ONNX_RECORD]  # exported before digests were recorded
    (copy / META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="wildvox.inference.onnx_runtime"):
        assert load_model(copy).backend == "torch"
    assert "has no export record in model.json" in caplog.text
    (copy / ONNX_FILE).write_bytes(b"not onnx")
    record = {"sha256": hashlib.sha256(b"not onnx").hexdigest(), "model_id": meta["model_id"]}
    update_model_extra(copy, ONNX_RECORD, record)  # recorded, yet unloadable
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        load_model(copy)
    (copy / ONNX_FILE).unlink()
    assert load_model(copy).backend == "torch"
    with pytest.raises(ValueError, match="backend must be"):
        load_model(copy, backend="tensorrt")


def test_int8_copy_runs_and_stays_close_to_float32(model_dir: Path, wildmix: Path) -> None:
    """The int8 export (bench/onnx_int8.py measures its EER and speed on the shipped model)."""
    from wildvox.inference.onnx_runtime import OnnxEmbedder, quantize_embedder

    out = quantize_embedder(model_dir / ONNX_FILE, model_dir.parent / "int8" / "embedder.onnx")
    assert out.stat().st_size < (model_dir / ONNX_FILE).stat().st_size
    files = sorted((wildmix / "wav" / "gcast-xandru-osuna").rglob("*.opus"))[:4]
    m = load_model(model_dir)
    ref = m.embed_batch(files)
    m.onnx = OnnxEmbedder(out)
    got = m.embed_batch(files)
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.9, cos
