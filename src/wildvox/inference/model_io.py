"""Exported models: ``model.safetensors`` (weights) + ``model.json`` (config, speakers, extras).

safetensors holds tensors only, so loading a model never executes code from the file. The
model id is the first 16 hex digits of the sha256 of ``model.safetensors``; loading recomputes
it, so weights changed after export (or an edited id) are refused, and everything keyed by the
id (speaker stores, the ONNX export, calibration) is known to belong to these weights.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from wildvox.config import Config, ConfigError, from_dict, to_dict
from wildvox.data.files import atomic_write
from wildvox.models.speaker_net import SpeakerNet, build_speaker_net

WEIGHTS = "model.safetensors"
META = "model.json"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """An exported model folder that is missing, incomplete, corrupt or inconsistent."""


@dataclass
class ExportedModel:
    """A loaded model: the network in eval mode and everything saved beside it."""

    net: SpeakerNet
    config: Config
    model_id: str
    speakers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)


def _digest(data: bytes) -> str:
    """The model id of weights ``data``: the first 16 hex digits of their sha256."""
    return hashlib.sha256(data).hexdigest()[:16]


def export_model(
    out_dir: Path,
    net: SpeakerNet,
    config: Config,
    speakers: list[str],
    head_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write the model folder; returns the model id (a hash of the weights, checked at load)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for k, v in (head_state or {}).items():
        tensors[f"head.{k}"] = v.detach().cpu().contiguous()
    data = save(tensors)
    model_id = _digest(data)
    atomic_write(out_dir / WEIGHTS, data)
    meta = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "config": to_dict(config),
        "speakers": speakers,
        "extra": extra or {},
    }
    atomic_write(out_dir / META, json.dumps(meta, indent=1).encode())
    return model_id


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """The checked contents of ``model_dir/model.json`` (config still as plain data).

    Raises:
        ModelFileError: missing or unreadable file, or a field of the wrong shape.
    """
    meta_path = Path(model_dir) / META
    if not meta_path.is_file():
        raise ModelFileError(f"{meta_path}: missing (is {model_dir} an exported wildvox model?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{meta_path}: not valid model metadata ({exc})") from exc
    except OSError as exc:
        raise ModelFileError(f"{meta_path}: cannot read ({exc.strerror or exc})") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{meta_path}: not valid model metadata (not a JSON object)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{meta_path}: unsupported format {meta.get('format_version')!r}")
    meta.setdefault("extra", {})
    meta.setdefault("speakers", [])
    model_id, speakers = meta.get("model_id"), meta["speakers"]
    problem = None
    if not isinstance(model_id, str) or not re.fullmatch(r"[0-9a-f]{16}", model_id):
        problem = f"model_id must be 16 hex digits, got {model_id!r}"
    elif not isinstance(meta.get("config"), dict):
        problem = "config must be a mapping"
    elif not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers):
        problem = "speakers must be a list of speaker names (strings)"
    elif len(set(speakers)) != len(speakers):
        problem = "speakers has duplicate names"
    elif not isinstance(meta["extra"], dict):
        problem = f"extra must be a mapping, got {meta['extra']!r}"
    if problem:
        raise ModelFileError(f"{meta_path}: not valid model metadata ({problem})")
    return meta


def update_model_extra(model_dir: Path, key: str, value: Any) -> None:
    """Set one entry of ``extra`` in an exported model's metadata (e.g. its calibration)."""
    meta = read_meta(model_dir)
    meta["extra"][key] = value
    atomic_write(Path(model_dir) / META, json.dumps(meta, indent=1).encode())


def load_exported(model_dir: str | Path, device: str = "cpu") -> ExportedModel:
    """Load a model folder written by :func:`export_model`, checking every part of it.

    The weights must hash to the folder's ``model_id``: weights changed or swapped after export
    (or an edited id) are refused, never loaded under the old id.

    Raises:
        ModelFileError: a missing, unreadable, inconsistent or altered file (named).
    """
    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / META, model_dir / WEIGHTS
    meta = read_meta(model_dir)
    try:
        config = from_dict(meta["config"])
    except ConfigError as exc:
        raise ModelFileError(f"{meta_path}: not a valid saved config ({exc})") from exc
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: missing (is {model_dir} an exported wildvox model?)")
    try:
        data = weights_path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{weights_path}: cannot read ({exc.strerror or exc})") from exc
    model_id = meta["model_id"]
    if _digest(data) != model_id:
        raise ModelFileError(
            f"{weights_path}: its sha256 starts {_digest(data)}, not with model_id {model_id} "
            f"of {meta_path}: the weights or the id were changed after export. Put back the "
            f"{WEIGHTS} and {META} that were written together, or export the model again"
        )
    try:
        tensors = load(data)
    except SafetensorError as exc:
        raise ModelFileError(f"{weights_path}: not a readable safetensors file ({exc})") from exc
    net = build_speaker_net(config)
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{weights_path}: weights do not fit the saved config ({exc})"
        ) from exc
    net.to(device).eval()
    head = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("head.")}
    return ExportedModel(
        net=net,
        config=config,
        model_id=model_id,
        speakers=list(meta["speakers"]),
        extra=dict(meta["extra"]),
        head_state=head,
    )
