import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wildvox.config
from wildvox.config import (
    AugmentConfig,
    Config,
    ConfigError,
    dump_config,
    from_dict,
    load_config,
    to_dict,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG_SOURCE = Path(wildvox.config.__file__).read_text()


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(None)
    path = tmp_path / "r.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    assert from_dict(to_dict(cfg)) == cfg


def test_overrides_are_typed() -> None:
    cfg = load_config(None, ["train.epochs=3", "train.lr=0.01", "dataset.cache_audio=false"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.dataset.cache_audio is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochz=3", "unknown key 'train.epochz'"),
        ("nonsense=1", "unknown key 'nonsense'"),
        ("train.epochs=three", "'train.epochs' must be of type int"),
        ("train.epochs", "must look like section.key=value"),
        ("dataset.train=[{root: x, lst: y}]", "unknown key 'dataset.train[0].lst'"),
    ],
)
def test_bad_overrides_are_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [override])


def test_unknown_key_in_yaml_names_the_file_section(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  backbone: resnet34_se\n  nLcasses: 5994\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model\.nLcasses'"):
        load_config(path)


def test_data_placeholder_expands_in_corpus_roots() -> None:
    cfg = load_config(None, data_root="/corpora/vox1")
    assert cfg.data == "/corpora/vox1"
    assert cfg.dataset.train[0].root == "/corpora/vox1"


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").rglob("*.yaml")), ids=str)
def test_every_recipe_loads(recipe: Path) -> None:
    cfg = load_config(recipe, data_root="/tmp")
    assert isinstance(cfg, Config)


# --- #11.7: string choices are Literal types checked at load, with the valid choices --------
@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("dataset.sampler=balanced", "random, hpm"),
        ("features.kind=plp", "fbank, mfcc"),
        ("train.optimizer=lamb", "adam, sgd"),
        ("train.lr_scheduler=cosine", "constant, cyclic, warmup_exp"),
        ("train.margin_scheduler=step", "constant, ramp"),
        ("train.precision=fp8", "fp32, bf16, fp16"),
    ],
)
def test_string_choices_are_checked_at_load(override: str, choices: str) -> None:
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"^{key}: unknown \w+ '{value}'; valid: {choices}$"):
        load_config(None, [override])


def test_literal_choices_match_the_registries() -> None:
    import typing

    from wildvox.config import FeatureKind, LRScheduler, MarginScheduler
    from wildvox.models.speaker_net import FEATURES
    from wildvox.training.schedulers import LR_SCHEDULES, MARGIN_SCHEDULES

    assert sorted(typing.get_args(FeatureKind)) == FEATURES.names()
    assert sorted(typing.get_args(LRScheduler)) == LR_SCHEDULES.names()
    assert sorted(typing.get_args(MarginScheduler)) == MARGIN_SCHEDULES.names()


def test_choices_are_checked_when_a_config_is_made_in_code() -> None:
    cfg = load_config(None)
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        dataclasses.replace(cfg.train, precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'train\.epochs' must be >= 1"):
        dataclasses.replace(cfg.train, epochs=0)


def test_augment_config_lives_in_config() -> None:
    import wildvox.augment
    import wildvox.augment.chain

    assert wildvox.augment.AugmentConfig is AugmentConfig
    assert wildvox.augment.chain.AugmentConfig is AugmentConfig
    assert "wildvox.augment" not in (CONFIG_SOURCE.split('"""', 2)[2])  # no import of augment/


# --- #12.6: ranges are checked at load and the error names the key ---------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-1", "'train.epochs' must be >= 1, got -1"),
        ("train.epochs=0", "'train.epochs' must be >= 1, got 0"),
        ("train.batch_size=0", "'train.batch_size' must be >= 1"),
        ("train.lr=0", "'train.lr' must be > 0"),
        ("train.lr=-0.1", "'train.lr' must be > 0"),
        ("train.lr=.nan", "'train.lr' must be a finite number"),
        ("train.weight_decay=-1", "'train.weight_decay' must be >= 0"),
        ("train.head_weight_decay=-1", "'train.head_weight_decay' must be >= 0"),
        ("train.seed=-3", "'train.seed' must be >= 0"),
        ("train.distill_weight=1", r"'train.distill_weight' > 0 needs train.distill_teacher"),
        ("features.sample_rate=0", "'features.sample_rate' must be within [4000, 192000]"),
        ("features.sample_rate=1000000", "'features.sample_rate' must be within"),
        ("features.n_mels=0", "'features.n_mels' must be >= 1"),
        ("features.frame_length_ms=0", "'features.frame_length_ms' must be > 0"),
        ("features.frame_shift_ms=-10", "'features.frame_shift_ms' must be > 0"),
        ("features.frame_length_ms=0.05", "'features.frame_length_ms' must span at least 2"),
        ("dataset.crop_seconds=0", "'dataset.crop_seconds' must be > 0"),
        ("dataset.hpm_utts=0", "'dataset.hpm_utts' must be >= 1"),
        ("dataset.train=[]", "'dataset.train' needs at least one corpus"),
        ("dataset.train=[{splits: [0]}]", r"'dataset.train[0].splits' must be >= 1"),
        ("model.embed_dim=0", "'model.embed_dim' must be >= 1"),
        ("head.scale=0", "'head.scale' must be > 0"),
        ("head.margin=-0.2", "'head.margin' must be >= 0"),
        ("augment.prob=1.5", "'augment.prob' must be within [0.0, 1.0]"),
        ("augment.prob=-0.1", "'augment.prob' must be within [0.0, 1.0]"),
        ("augment.noise=-1", "'augment.noise' must be >= 0"),
        ("augment.noise_snr=[10, 5]", "'augment.noise_snr' must be a (min, max) pair"),
        ("augment.babble_speakers=[0, 3]", "'augment.babble_speakers' must be >= 1"),
        ("augment.speed_factors=[0, 1.1]", "'augment.speed_factors' must be > 0"),
        ("eval.max_seconds=0", "'eval.max_seconds' must be > 0"),
        (
            "dataset.sampler=hpm",
            r"hpm_utts = 128 utterances; set train.batch_size to that \(it is 64\)",
        ),
    ],
)
def test_out_of_range_values_are_refused_at_load(override: str, message: str) -> None:
    pattern = message if "\\" in message else re.escape(message)
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_out_of_range_value_in_a_recipe_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  epochs: -1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: 'train.epochs' must be >= 1"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the recipe is empty"),
        ("# only a comment\n", "the recipe is empty"),
        ("- a\n- b\n", "not a YAML recipe .* holds a list"),
        ("just words\n", "not a YAML recipe .* holds a str"),
        ("train: [1, 2\n", "not valid YAML"),
    ],
)
def test_empty_or_non_mapping_recipe_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_binary_file_as_recipe_is_not_a_yaml_recipe(tmp_path: Path) -> None:
    wav = tmp_path / "some.wav"
    wav.write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\xbb\xff")
    with pytest.raises(ConfigError, match=r"some\.wav: not a YAML recipe \(the file is not UTF-8"):
        load_config(wav)


# --- #12.7: YAML aliases are refused, so a billion-laughs file cannot hang the load --------
BILLION_LAUGHS = """\
train:
  lr_scheduler_args:
    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_billion_laughs_recipe_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "lol.yaml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 1000  # 9**9 = 387 million "lol"s once expanded
    # in a child process, so that a regression fails on the timeout instead of hanging the run
    code = (
        "import sys, time\n"
        "from wildvox.config import ConfigError, load_config\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    load_config(sys.argv[1])\n"
        "except ConfigError as exc:\n"
        "    print(f'{time.perf_counter() - start:.3f} {exc}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    ).stdout
    seconds, message = out.split(" ", 1)
    assert float(seconds) < 1.0
    assert re.match(r".*lol\.yaml: line 4: YAML aliases \('\*a'\) are not allowed", message)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_config(None, ["train.lr_scheduler_args={a: &a [1, 1], b: [*a, *a]}"])
    assert time.perf_counter() - start < 1.0


def test_bad_yaml_in_an_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"override 'train.epochs=\[1'"):
        load_config(None, ["train.epochs=[1"])


# --- #12.8: unknown registry names are refused at load, listing the valid names ------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.backbone=nope", "model.backbone: unknown backbone 'nope'; valid names: "),
        ("model.pooling=nope", "model.pooling: unknown pooling 'nope'; valid names: "),
        ("head.name=nope", "head.name: unknown head 'nope'; valid names: "),
    ],
)
def test_unknown_component_names_are_refused_at_load(override: str, message: str) -> None:
    from wildvox.registry import BACKBONES, HEADS, POOLINGS

    registry = {"model.backbone": BACKBONES, "model.pooling": POOLINGS, "head.name": HEADS}
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(message + ", ".join(registry[key].names()))):
        load_config(None, [override])
    with pytest.raises(ConfigError, match="unknown"):
        from_dict({"model": {"backbone": "nope"}})
