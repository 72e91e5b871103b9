"""Exported models: ``model.safetensors`` (weights) + ``model.json`` (config, speakers, extras).

safetensors holds tensors only, so loading a model never executes code from the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from wildvox.config import Config, ConfigError, from_dict, to_dict
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


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def export_model(
    out_dir: Path,
    net: SpeakerNet,
    config: Config,
    speakers: list[str],
    head_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write the model folder; returns the model id (a hash of the weights)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for k, v in (head_state or {}).items():
        tensors[f"head.{k}"] = v.detach().cpu().contiguous()
    tmp = out_dir / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.chmod(0o644)  # safetensors writes 0600; a model folder is meant to be shared
    model_id = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
    tmp.replace(out_dir / WEIGHTS)
    meta = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "config": to_dict(config),
        "speakers": speakers,
        "extra": extra or {},
    }
    _atomic_write(out_dir / META, json.dumps(meta, indent=1).encode())
    return model_id


def update_model_extra(model_dir: Path, key: str, value: Any) -> None:
    """Set one entry of ``extra`` in an exported model's metadata (e.g. its calibration)."""
    meta_path = model_dir / META
    meta = json.loads(meta_path.read_text())
    meta["extra"][key] = value
    _atomic_write(meta_path, json.dumps(meta, indent=1).encode())


def load_exported(model_dir: str | Path, device: str = "cpu") -> ExportedModel:
    """Load a model folder written by :func:`export_model`, checking every part of it."""
    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / META, model_dir / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise ModelFileError(f"{p}: missing (is {model_dir} an exported wildvox model?)")
    try:
        meta = json.loads(meta_path.read_text())
        config = from_dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise ModelFileError(f"{meta_path}: not valid model metadata ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{meta_path}: unsupported format {meta.get('format_version')!r}")
    try:
        tensors = load_file(str(weights_path), device=device)
    except (SafetensorError, OSError) as exc:
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
    head = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
    return ExportedModel(
        net=net,
        config=config,
        model_id=str(meta["model_id"]),
        speakers=list(meta.get("speakers", [])),
        extra=dict(meta.get("extra", {})),
        head_state=head,
    )
