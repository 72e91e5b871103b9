"""Typed experiment configuration: frozen dataclasses, strict YAML, dotted overrides.

A recipe is plain data. Every key must name a field: an unknown key is an error, never silently
ignored. Values computed from the data (number of speakers, feature size) are not part of the
config; they are saved with the checkpoint.

    >>> cfg = load_config(None, overrides=["train.epochs=3", "model.embed_dim=128"])
    >>> cfg.train.epochs, cfg.model.embed_dim
    (3, 128)
    >>> load_config(None, overrides=["train.epochz=3"])
    Traceback (most recent call last):
    ...
    wildvox.config.ConfigError: unknown key 'train.epochz'; valid keys of 'train': ...
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wildvox.augment.chain import AugmentConfig


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration schema."""


@dataclass(frozen=True)
class CorpusConfig:
    """One training corpus in VoxCeleb layout (``<root>/wav/<speaker>/<session>/<utt>``).

    ``list`` is a file relative to ``root``: either ``<speaker> <path>`` lines (``dev_list.txt``,
    voxceleb_trainer's ``train_list.txt``) or ``<split> <path>`` lines (``iden_split.txt``, of
    which only ``splits`` are used). ``name`` keeps speaker ids distinct across corpora; empty
    means the root folder's name. ``include_speakers`` (when non-empty) and
    ``exclude_speakers`` select speakers by their id in the corpus (e.g. to hold some out).
    ``max_utts_per_speaker`` (when > 0) keeps each speaker's first N utterances in list order:
    a smaller, balanced set for quick experiments.
    """

    root: str = "${data}"
    list: str = "iden_split.txt"
    splits: tuple[int, ...] = (1,)
    name: str = ""
    include_speakers: tuple[str, ...] = ()
    exclude_speakers: tuple[str, ...] = ()
    max_utts_per_speaker: int = 0


@dataclass(frozen=True)
class DataConfig:
    train: tuple[CorpusConfig, ...] = (CorpusConfig(),)
    crop_seconds: float = 2.0
    min_seconds: float = 0.1
    cache_audio: bool = True
    num_workers: int = 1
    # "random": shuffled batches; "hpm": hard prototype mining (IDLab): each batch holds
    # hpm_seed_speakers groups of a random speaker and its hpm_speakers - 1 nearest speakers by
    # the head's prototypes, hpm_utts utterances each (batch_size = U * S * I).
    sampler: str = "random"
    hpm_speakers: int = 16
    hpm_utts: int = 8
    hpm_seed_speakers: int = 1


@dataclass(frozen=True)
class FeatureConfig:
    kind: str = "fbank"
    n_mels: int = 80
    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    cmn: bool = True


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet34_se"
    backbone_args: dict[str, Any] = field(default_factory=dict)
    pooling: str = "sap"
    pooling_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 256


@dataclass(frozen=True)
class HeadConfig:
    name: str = "sc_aam"
    margin: float = 0.1
    scale: float = 15.0
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 2e-5
    grad_clip: float = 5.0
    seed: int = 0
    num_threads: int = 0
    checkpoint_every_steps: int = 0
    val_max_utts: int = 400
    device: str = "auto"
    # batch_size is the global batch: with N processes each takes batch_size / N of it.
    head_weight_decay: float | None = None  # None: weight_decay
    lr_scheduler: str = "constant"  # constant | cyclic | warmup_exp (training/schedulers.py)
    lr_scheduler_args: dict[str, Any] = field(default_factory=dict)
    margin_scheduler: str = "constant"  # constant | ramp
    margin_scheduler_args: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on CUDA only)
    init_from: str = ""  # checkpoint .pt or exported model folder: start from its net + head
    keep_epoch_checkpoints: int = 0  # keep checkpoints/epoch_NNNN.pt of the last N epochs
    average_last: int = 0  # export the average of the last N epoch checkpoints
    sync_batchnorm: bool = True  # batch statistics over all processes in distributed runs
    # knowledge distillation (training/distill.py): an .npz of teacher embeddings of the
    # training files (ids '<corpus>/<speaker>/<session>/<file>'), relational loss weight
    distill_teacher: str = ""
    distill_weight: float = 0.0


@dataclass(frozen=True)
class EvalConfig:
    trials: str = "veri_test.txt"
    iden_split: str = "iden_split.txt"
    batch_seconds: float = 400.0
    max_seconds: float = 30.0


@dataclass(frozen=True)
class Config:
    """The whole experiment. ``data`` is the evaluation corpus root (``${data}`` in paths)."""

    name: str = "default"
    data: str = ""
    features: FeatureConfig = FeatureConfig()
    dataset: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    head: HeadConfig = HeadConfig()
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    calibration: tuple[CorpusConfig, ...] = ()


C = TypeVar("C")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key!r} must be a mapping, got {value!r}")
        return _from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key!r} needs {len(args)} values, got {value!r}")
        return tuple(
            _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key!r} must be true or false, got {value!r}")
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is str and isinstance(value, int | float):
        return str(value)
    raise ConfigError(f"{key!r} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")


def _from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            where = f"of {prefix!r}" if prefix else "at the top level"
            raise ConfigError(
                f"unknown key {full!r}; valid keys {where}: {', '.join(sorted(names))}"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain YAML-safe data."""
    result: dict[str, Any] = _to_plain(cfg)
    return result


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(data: dict[str, Any]) -> Config:
    return _from_dict(Config, data)


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, data_root: str | None = None
) -> Config:
    """Read a YAML recipe (or the defaults when ``path`` is None), apply dotted overrides.

    ``data_root`` sets ``data`` (the evaluation corpus); ``${data}`` in corpus roots expands to it.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read recipe ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping at the top level")
        data = loaded or {}
    base = to_dict(_from_dict(Config, data))
    for override in overrides or []:
        _apply_override(base, override)
    if data_root is not None:
        base["data"] = str(data_root)
    cfg = _from_dict(Config, base)

    def expand(corpora: tuple[CorpusConfig, ...]) -> tuple[CorpusConfig, ...]:
        return tuple(
            dataclasses.replace(c, root=c.root.replace("${data}", cfg.data)) for c in corpora
        )

    return dataclasses.replace(
        cfg,
        dataset=dataclasses.replace(cfg.dataset, train=expand(cfg.dataset.train)),
        calibration=expand(cfg.calibration),
    )
