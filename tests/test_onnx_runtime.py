"""ONNX Runtime inference: `wildvox export-onnx` adds embedder.onnx, load_model() uses it, and it
gives the eager model's embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import tiny_config
from typer.testing import CliRunner

from wildvox.api import load_model
from wildvox.cli.main import app
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.inference.model_io import META, ModelFileError
from wildvox.inference.onnx_runtime import ONNX_FILE
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


def test_stale_or_broken_exports_are_not_used(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / META).read_text())
    meta["model_id"] = "0123456789abcdef"  # as if the weights had been retrained since
    (copy / META).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="export-onnx"):
        load_model(copy, backend="onnx")
    (copy / ONNX_FILE).write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        load_model(copy)
    (copy / ONNX_FILE).unlink()
    assert load_model(copy).backend == "torch"
    with pytest.raises(ValueError, match="backend must be"):
        load_model(copy, backend="tensorrt")
