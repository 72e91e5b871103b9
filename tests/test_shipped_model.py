"""The model shipped inside the package: it loads offline with its cohort, calibration and ONNX
export all in agreement, and tells a same-speaker pair from a different-speaker one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from wildvox.api import PRETRAINED, load_model
from wildvox.inference.model_io import WEIGHTS, load_exported, read_meta
from wildvox.inference.onnx_runtime import ONNX_FILE, ONNX_RECORD, load_onnx_embedder

pytestmark = pytest.mark.skipif(
    not (PRETRAINED / WEIGHTS).is_file(), reason="no shipped model in this checkout"
)


def test_shipped_model_loads_whole(wildmix: Path) -> None:
    m = load_model()  # raises if the cohort, calibration or ONNX export disagree
    assert m.calibration is not None
    if m.cohort is not None:
        assert m.calibration.score == f"as-norm:{m.cohort.digest}"
    assert m.backend == "onnx"  # the shipped folder carries an up-to-date embedder.onnx
    files = sorted((wildmix / "wav" / "gcast-xandru-osuna").rglob("*.opus"))[:3]
    other = sorted((wildmix / "wav" / "ls1998").rglob("*.opus"))[:1]
    eager = load_model(backend="torch")
    np.testing.assert_allclose(m.embed_batch(files), eager.embed_batch(files), atol=1e-4)
    same, diff = m.verify(files[0], files[1]), m.verify(files[0], other[0])
    assert same.score > diff.score and same.llr > diff.llr
    for point in ("eer", "far=1%", "min-dcf"):
        assert np.isfinite(m.calibration.threshold(point))


def test_shipped_files_are_tied_to_the_model_id() -> None:
    """The weights hash to the id and model.json records the ONNX export's digest (#12.5), so
    the shipped folder passes the checks that refuse altered or stale files."""
    meta = read_meta(PRETRAINED)
    weights = hashlib.sha256((PRETRAINED / WEIGHTS).read_bytes()).hexdigest()
    assert weights[:16] == meta["model_id"]
    onnx = hashlib.sha256((PRETRAINED / ONNX_FILE).read_bytes()).hexdigest()
    assert meta["extra"][ONNX_RECORD] == {"sha256": onnx, "model_id": meta["model_id"]}
    assert load_onnx_embedder(PRETRAINED, load_exported(PRETRAINED).model_id) is not None
