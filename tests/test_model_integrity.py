"""An exported model folder is checked whole at load (#12.5, #12.8): the weights must hash to
the model id, and a model.json of the wrong shape is a one-line ModelFileError (exit 2 in the
CLI), never a traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from wildvox.cli.main import app
from wildvox.config import load_config
from wildvox.inference.model_io import (
    META,
    WEIGHTS,
    ModelFileError,
    export_model,
    load_exported,
    read_meta,
    update_model_extra,
)
from wildvox.models.speaker_net import build_speaker_net

runner = CliRunner()

TINY = [
    "model.backbone_args={base_channels: 4, layers: [1, 1, 1, 1]}",
    "model.embed_dim=16",
    "features.n_mels=24",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder of an untrained tiny net (no training needed to test the files)."""
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("integrity") / "model"
    export_model(out, build_speaker_net(cfg), cfg, ["alice", "bob"])
    return out


@pytest.fixture
def model(exported: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(exported, copy)
    return copy


def edit_meta(model: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((model / META).read_text())
    change(meta)
    (model / META).write_text(json.dumps(meta))


def test_model_id_is_the_digest_of_the_weights(model: Path) -> None:
    loaded = load_exported(model)
    digest = hashlib.sha256((model / WEIGHTS).read_bytes()).hexdigest()
    assert loaded.model_id == digest[:16] == read_meta(model)["model_id"]
    assert loaded.speakers == ["alice", "bob"]
    assert oct((model / WEIGHTS).stat().st_mode)[-3:] == "644"  # shareable, as before


def test_perturbed_weights_are_refused(model: Path) -> None:
    tensors = load_file(str(model / WEIGHTS))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key] = tensors[key] + 1e-3  # a plausible, loadable, silently different model
    save_file(tensors, str(model / WEIGHTS))
    with pytest.raises(ModelFileError, match=r"model\.safetensors: its sha256 starts [0-9a-f]{16}"
                       r", not with model_id .* export the model again"):  # fmt: skip
        load_exported(model)


def test_flipped_byte_in_weights_is_refused(model: Path) -> None:
    data = bytearray((model / WEIGHTS).read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data: still a valid safetensors file
    (model / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="the weights or the id were changed after export"):
        load_exported(model)


def test_edited_model_id_is_refused(model: Path) -> None:
    edit_meta(model, lambda m: m.update(model_id="0123456789abcdef"))
    with pytest.raises(ModelFileError, match="not with model_id 0123456789abcdef"):
        load_exported(model)


def test_weights_of_another_export_are_refused(model: Path, tmp_path: Path) -> None:
    cfg = load_config(None, TINY)
    torch.manual_seed(1)
    other = tmp_path / "other"
    export_model(other, build_speaker_net(cfg), cfg, ["alice", "bob"])
    shutil.copy(other / WEIGHTS, model / WEIGHTS)  # same shapes, other weights
    with pytest.raises(ModelFileError, match="changed after export"):
        load_exported(model)
    shutil.copy(other / META, model / META)  # the pair written together loads
    assert load_exported(model).model_id == read_meta(other)["model_id"]


def set_backbone(m: dict[str, Any]) -> None:
    m["config"]["model"]["backbone"] = "nope"


def set_rate(m: dict[str, Any]) -> None:
    m["config"]["features"]["sample_rate"] = 0


BAD_META: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown_backbone", set_backbone, r"model\.backbone: unknown backbone 'nope'; valid names"),
    ("extra_null", lambda m: m.update(extra=None), "extra must be a mapping, got None"),
    ("extra_list", lambda m: m.update(extra=[]), r"extra must be a mapping, got \[\]"),
    ("integer_speakers", lambda m: m.update(speakers=[1, 2]), "speakers must be a list of"),
    ("speakers_not_list", lambda m: m.update(speakers=5), "speakers must be a list of"),
    ("duplicate_speakers", lambda m: m.update(speakers=["a", "a"]), "duplicate names"),
    ("sample_rate_0", set_rate, r"'features\.sample_rate' must be within \[4000, 192000\]"),
    ("config_null", lambda m: m.update(config=None), "config must be a mapping"),
    ("model_id_number", lambda m: m.update(model_id=12), "model_id must be 16 hex digits"),
    ("old_format", lambda m: m.update(format_version=0), "unsupported format 0"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_META, ids=[c[0] for c in BAD_META])
def test_bad_model_json_is_a_model_file_error(
    model: Path, tmp_path: Path, case: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_meta(model, change)
    with pytest.raises(ModelFileError, match=message):
        load_exported(model)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    result = runner.invoke(app, ["verify", "--model", str(model), str(wav), str(wav)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and str(META) in result.output


def test_model_json_that_is_not_an_object_is_refused(model: Path) -> None:
    (model / META).write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="not a JSON object"):
        load_exported(model)
    (model / META).write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ModelFileError, match="not valid model metadata"):
        load_exported(model)
    with pytest.raises(ModelFileError, match="not valid model metadata"):
        update_model_extra(model, "calibration", {})


def test_update_model_extra_keeps_the_weights_valid(model: Path) -> None:
    update_model_extra(model, "note", {"a": 1})
    assert load_exported(model).extra == {"note": {"a": 1}}
    edit_meta(model, lambda m: m.update(extra=None))
    with pytest.raises(ModelFileError, match="extra must be a mapping"):
        update_model_extra(model, "note", 2)
