"""Typed experiment configuration: frozen dataclasses, strict YAML, dotted overrides.

A recipe is plain data. Every key must name a field: an unknown key is an error, never silently
ignored. Values are checked when the config is made: types, choices (``typing.Literal`` fields),
ranges (``train.epochs >= 1``, probabilities in [0, 1], ...) and registered component names, so
a bad recipe fails at load with the key in the message, not deep inside training. Values
computed from the data (number of speakers, feature size) are not part of the config; they are
saved with the checkpoint.

    >>> cfg = load_config(None, overrides=["train.epochs=3", "model.embed_dim=128"])
    >>> cfg.train.epochs, cfg.model.embed_dim
    (3, 128)
    >>> load_config(None, overrides=["train.epochz=3"])
    Traceback (most recent call last):
    ...
    wildvox.config.ConfigError: unknown key 'train.epochz'; valid keys of 'train': ...
    >>> load_config(None, overrides=["train.epochs=-1"])
    Traceback (most recent call last):
    ...
    wildvox.config.ConfigError: 'train.epochs' must be >= 1, got -1
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration schema."""


class _FieldError(ConfigError):
    """A bad value of one field; ``_from_dict`` re-words it with the field's full key."""

    def __init__(self, section: str, name: str, problem: str) -> None:
        super().__init__(f"'{section}.{name}' {problem}")
        self.name, self.problem = name, problem


Sampler = Literal["random", "hpm"]
FeatureKind = Literal["fbank", "mfcc"]
Optimizer = Literal["adam", "sgd"]
LRScheduler = Literal["constant", "cyclic", "warmup_exp"]
MarginScheduler = Literal["constant", "ramp"]
Precision = Literal["fp32", "bf16", "fp16"]

AUGMENT_KINDS = ("speed", "noise", "babble", "reverb", "codec", "telephone")
"""Augmentation kinds, in the order of their weights in :class:`AugmentConfig`."""


def _num(default: Any, *, ge: float | None = None, gt: float | None = None,
         le: float | None = None, ordered: bool = False) -> Any:  # fmt: skip
    """A field whose value (each value, for a tuple) must satisfy the bounds; ``ordered``: a
    ``(min, max)`` pair with ``min <= max``."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "ordered": ordered})


def _choice_error(key: str, value: Any, choices: tuple[Any, ...]) -> str:
    what = key.rsplit(".", 1)[-1]
    return f"{key}: unknown {what} {value!r}; valid: {', '.join(map(str, choices))}"


def _bound_problem(value: Any, meta: dict[str, Any]) -> str | None:
    """What is wrong with the number ``value`` under the bounds ``meta``, or None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if meta["ge"] is not None and meta["le"] is not None and not meta["ge"] <= value <= meta["le"]:
        return f"must be within [{meta['ge']}, {meta['le']}]"
    if meta["ge"] is not None and not value >= meta["ge"]:
        return f"must be >= {meta['ge']}"
    if meta["gt"] is not None and not value > meta["gt"]:
        return f"must be > {meta['gt']}"
    if meta["le"] is not None and not value <= meta["le"]:
        return f"must be <= {meta['le']}"
    return None


class _Checked:
    """Checks every field of a config dataclass when it is made (also when made in code)."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):  # YAML and callers give lists where the schema has tuples
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            choices = typing.get_args(hints[f.name])
            if typing.get_origin(hints[f.name]) is Literal and value not in choices:
                raise ConfigError(_choice_error(f"{self._section}.{f.name}", value, choices))
            if not f.metadata or value is None:
                continue
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                problem = _bound_problem(v, dict(f.metadata))
                if problem:
                    raise _FieldError(self._section, f.name, f"{problem}, got {value!r}")
            if f.metadata["ordered"] and (len(values) != 2 or values[0] > values[1]):
                raise _FieldError(
                    self._section, f.name, f"must be a (min, max) pair, got {value!r}"
                )
        self._check()

    def _check(self) -> None:
        """Checks that involve several fields (none by default)."""


@dataclass(frozen=True)
class CorpusConfig(_Checked):
    """One training corpus in VoxCeleb layout (``<root>/wav/<speaker>/<session>/<utt>``).

    ``list`` is a file relative to ``root``: either ``<speaker> <path>`` lines (``dev_list.txt``,
    voxceleb_trainer's ``train_list.txt``) or ``<split> <path>`` lines (``iden_split.txt``, of
    which only ``splits`` are used). ``name`` keeps speaker ids distinct across corpora; empty
    means the root folder's name. ``include_speakers`` (when non-empty) and
    ``exclude_speakers`` select speakers by their id in the corpus (e.g. to hold some out).
    ``max_utts_per_speaker`` (when > 0) keeps each speaker's first N utterances in list order:
    a smaller, balanced set for quick experiments.
    """

    _section: ClassVar[str] = "corpus"
    root: str = "${data}"
    list: str = "iden_split.txt"
    splits: tuple[int, ...] = _num((1,), ge=1)
    name: str = ""
    include_speakers: tuple[str, ...] = ()
    exclude_speakers: tuple[str, ...] = ()
    max_utts_per_speaker: int = _num(0, ge=0)


@dataclass(frozen=True)
class DataConfig(_Checked):
    _section: ClassVar[str] = "dataset"
    train: tuple[CorpusConfig, ...] = (CorpusConfig(),)
    crop_seconds: float = _num(2.0, gt=0)
    min_seconds: float = _num(0.1, ge=0)
    cache_audio: bool = True
    num_workers: int = _num(1, ge=0)
    # "random": shuffled batches; "hpm": hard prototype mining (IDLab): each batch holds
    # hpm_seed_speakers groups of a random speaker and its hpm_speakers - 1 nearest speakers by
    # the head's prototypes, hpm_utts utterances each (batch_size = U * S * I).
    sampler: Sampler = "random"
    hpm_speakers: int = _num(16, ge=1)
    hpm_utts: int = _num(8, ge=1)
    hpm_seed_speakers: int = _num(1, ge=1)

    def _check(self) -> None:
        if not self.train:
            raise _FieldError(self._section, "train", "needs at least one corpus")


@dataclass(frozen=True)
class FeatureConfig(_Checked):
    _section: ClassVar[str] = "features"
    kind: FeatureKind = "fbank"
    n_mels: int = _num(80, ge=1)
    sample_rate: int = _num(16000, ge=4000, le=192000)  # Hz
    frame_length_ms: float = _num(25.0, gt=0)
    frame_shift_ms: float = _num(10.0, gt=0)
    cmn: bool = True

    def _check(self) -> None:
        if self.sample_rate * self.frame_length_ms * 0.001 < 2:
            raise _FieldError(self._section, "frame_length_ms", "must span at least 2 samples")
        if self.sample_rate * self.frame_shift_ms * 0.001 < 1:
            raise _FieldError(self._section, "frame_shift_ms", "must span at least 1 sample")


@dataclass(frozen=True)
class ModelConfig(_Checked):
    _section: ClassVar[str] = "model"
    backbone: str = "resnet34_se"  # a name in BACKBONES, checked by check_components
    backbone_args: dict[str, Any] = field(default_factory=dict)
    pooling: str = "sap"  # a name in POOLINGS
    pooling_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = _num(256, ge=1)


@dataclass(frozen=True)
class HeadConfig(_Checked):
    _section: ClassVar[str] = "head"
    name: str = "sc_aam"  # a name in HEADS
    margin: float = _num(0.1, ge=0)
    scale: float = _num(15.0, gt=0)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AugmentConfig(_Checked):
    """Waveform augmentation and SpecAugment settings (plain data, saved with the recipe).

    Attributes:
        enabled: apply waveform augmentation at all.
        prob: probability that an utterance is augmented (online use).
        speed, noise, babble, reverb, codec, telephone: relative probabilities of each kind;
            0 disables it.
        speed_factors: speed perturbation factors (drawn uniformly).
        noise_dir: MUSAN-style directory (``noise/``, ``music/``, ``speech/``); built-in
            coloured noise without it, and ``speech/`` is a babble source when present.
        rir_dir: directory of RIR audio files; simulated RIRs without it.
        rir_bank: ``.npz`` cache path of the simulated RIR bank (in memory when None).
        rir_bank_size, rir_seed: number of simulated RIRs and the seed that makes them.
        noise_snr, babble_snr: SNR ranges in dB.
        babble_speakers: inclusive range of the number of babble talkers.
        specaugment: mask features with SpecAugment during training.
        time_masks, time_width, freq_masks, freq_width: SpecAugment masks per utterance and
            their largest widths (frames, bands).
    """

    _section: ClassVar[str] = "augment"
    enabled: bool = False
    prob: float = _num(0.6, ge=0.0, le=1.0)
    speed: float = _num(1.0, ge=0)
    noise: float = _num(1.0, ge=0)
    babble: float = _num(1.0, ge=0)
    reverb: float = _num(1.0, ge=0)
    codec: float = _num(0.0, ge=0)
    telephone: float = _num(0.0, ge=0)
    speed_factors: tuple[float, float] = _num((0.9, 1.1), gt=0)
    noise_dir: str | None = None
    rir_dir: str | None = None
    rir_bank: str | None = None
    rir_bank_size: int = _num(200, ge=1)
    rir_seed: int = _num(0, ge=0)
    noise_snr: tuple[float, float] = _num((0.0, 15.0), ordered=True)
    babble_snr: tuple[float, float] = _num((15.0, 20.0), ordered=True)
    babble_speakers: tuple[int, int] = _num((3, 7), ge=1, ordered=True)
    specaugment: bool = False
    time_masks: int = _num(1, ge=0)
    time_width: int = _num(5, ge=0)
    freq_masks: int = _num(1, ge=0)
    freq_width: int = _num(10, ge=0)

    def _check(self) -> None:
        if self.enabled and not self.weights():
            raise _FieldError(self._section, "enabled", "is true but every kind has weight 0")

    def weights(self) -> dict[str, float]:
        """The enabled kinds and their relative weights (zero-weight kinds left out)."""
        return {k: float(getattr(self, k)) for k in AUGMENT_KINDS if getattr(self, k) > 0.0}


@dataclass(frozen=True)
class TrainConfig(_Checked):
    _section: ClassVar[str] = "train"
    epochs: int = _num(10, ge=1)
    batch_size: int = _num(64, ge=1)
    optimizer: Optimizer = "adam"
    lr: float = _num(1e-3, gt=0)
    weight_decay: float = _num(2e-5, ge=0)
    grad_clip: float = _num(5.0, ge=0)  # 0: no clipping
    seed: int = _num(0, ge=0)
    num_threads: int = _num(0, ge=0)
    checkpoint_every_steps: int = _num(0, ge=0)
    val_max_utts: int = _num(400, ge=0)
    device: str = "auto"
    # batch_size is the global batch: with N processes each takes batch_size / N of it.
    head_weight_decay: float | None = _num(None, ge=0)  # None: weight_decay
    lr_scheduler: LRScheduler = "constant"  # training/schedulers.py
    lr_scheduler_args: dict[str, Any] = field(default_factory=dict)
    margin_scheduler: MarginScheduler = "constant"
    margin_scheduler_args: dict[str, Any] = field(default_factory=dict)
    precision: Precision = "fp32"  # autocast on CUDA only
    init_from: str = ""  # checkpoint .pt or exported model folder: start from its net + head
    keep_epoch_checkpoints: int = _num(0, ge=0)  # keep checkpoints/epoch_NNNN.pt of the last N
    average_last: int = _num(0, ge=0)  # export the average of the last N epoch checkpoints
    sync_batchnorm: bool = True  # batch statistics over all processes in distributed runs
    # knowledge distillation (training/distill.py): an .npz of teacher embeddings of the
    # training files (ids '<corpus>/<speaker>/<session>/<file>'), relational loss weight
    distill_teacher: str = ""
    distill_weight: float = _num(0.0, ge=0)

    def _check(self) -> None:
        if self.distill_weight > 0 and not self.distill_teacher:
            raise _FieldError(self._section, "distill_weight",
                              "> 0 needs train.distill_teacher (an .npz)")  # fmt: skip


@dataclass(frozen=True)
class EvalConfig(_Checked):
    _section: ClassVar[str] = "eval"
    trials: str = "veri_test.txt"
    iden_split: str = "iden_split.txt"
    batch_seconds: float = _num(400.0, gt=0)
    max_seconds: float = _num(30.0, gt=0)


@dataclass(frozen=True)
class Config(_Checked):
    """The whole experiment. ``data`` is the evaluation corpus root (``${data}`` in paths)."""

    name: str = "default"
    data: str = ""
    features: FeatureConfig = FeatureConfig()
    dataset: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    head: HeadConfig = HeadConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    calibration: tuple[CorpusConfig, ...] = ()

    def _check(self) -> None:
        d, batch = self.dataset, self.train.batch_size
        per_batch = d.hpm_seed_speakers * d.hpm_speakers * d.hpm_utts
        if d.sampler == "hpm" and per_batch != batch:
            raise ConfigError(
                "hard prototype mining batches hold dataset.hpm_seed_speakers * hpm_speakers * "
                f"hpm_utts = {per_batch} utterances; set train.batch_size to that (it is {batch})"
            )


def check_components(cfg: Config) -> None:
    """Raise ConfigError unless ``model.backbone``, ``model.pooling`` and ``head.name`` are
    registered (the message lists the valid names).

    The registries fill as their modules are imported, so this imports the model package; it
    runs when a recipe or a saved config is loaded, not when a dataclass is made in code.
    """
    import wildvox.models  # noqa: F401  (registers every backbone, pooling and head)
    from wildvox.registry import BACKBONES, HEADS, POOLINGS

    for key, registry, name in (
        ("model.backbone", BACKBONES, cfg.model.backbone),
        ("model.pooling", POOLINGS, cfg.model.pooling),
        ("head.name", HEADS, cfg.head.name),
    ):
        if name not in registry:
            valid = ", ".join(registry.names()) or "(none)"
            raise ConfigError(f"{key}: unknown {registry.kind} {name!r}; valid names: {valid}")


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
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise ConfigError(_choice_error(key, value, args))
        return value
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
    try:
        return cls(**kwargs)
    except _FieldError as exc:  # name the field by its full key, e.g. dataset.train[0].splits
        full = f"{prefix}.{exc.name}" if prefix else exc.name
        raise ConfigError(f"{full!r} {exc.problem}") from None


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
    """A config from plain data (a saved ``to_dict``), checked like a recipe."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    cfg = _from_dict(Config, data)
    check_components(cfg)
    return cfg


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases (``*name``): a recipe is a plain tree, and a few
    nested aliases ("billion laughs") expand to a tree too large to walk."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases ('*{event.anchor}') are not "
                "allowed in a recipe; write the values out"
            )
        return super().compose_node(parent, index)


def _parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass
    except RecursionError:
        raise ConfigError("YAML nested too deeply") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where and what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        if isinstance(node, list):  # a list item by index: dataset.train.0.max_utts_per_speaker
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"override {override!r}: {part!r} is not an index of "
                    f"{'.'.join(parts[:depth])} (0 to {len(node) - 1})"
                )
            key: Any = int(part)
        elif isinstance(node, dict):
            key = part
        else:
            raise ConfigError(f"override {override!r}: {parts[depth - 1]!r} is not a section")
        if depth == len(parts) - 1:
            break
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    try:
        node[key] = _parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: not valid YAML ({_yaml_problem(exc)})") from None
    except ConfigError as exc:
        raise ConfigError(f"override {override!r}: {exc}") from None


def _read_recipe(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML recipe (the file is not UTF-8 text)") from None
    try:
        loaded = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    except ConfigError as exc:  # aliases, nesting
        raise ConfigError(f"{path}: {exc}") from None
    if loaded is None:
        raise ConfigError(f"{path}: the recipe is empty")
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: not a YAML recipe (a recipe is a mapping of sections, "
            f"this file holds a {type(loaded).__name__})"
        )
    return loaded


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, data_root: str | None = None
) -> Config:
    """Read a YAML recipe (or the defaults when ``path`` is None), apply dotted overrides.

    ``data_root`` sets ``data`` (the evaluation corpus); ``${data}`` in corpus roots expands to it.

    Raises:
        ConfigError: unreadable, empty or non-mapping recipe, YAML aliases, an unknown key, a
            value of the wrong type or out of range, or an unregistered component name.
    """
    base = to_dict(Config())
    if path is not None:
        data = _read_recipe(path)
        try:
            base = to_dict(_from_dict(Config, data))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for override in overrides or []:
        _apply_override(base, override)
    if data_root is not None:
        base["data"] = str(data_root)
    cfg = _from_dict(Config, base)
    check_components(cfg)

    def expand(corpora: tuple[CorpusConfig, ...]) -> tuple[CorpusConfig, ...]:
        return tuple(
            dataclasses.replace(c, root=c.root.replace("${data}", cfg.data)) for c in corpora
        )

    return dataclasses.replace(
        cfg,
        dataset=dataclasses.replace(cfg.dataset, train=expand(cfg.dataset.train)),
        calibration=expand(cfg.calibration),
    )
