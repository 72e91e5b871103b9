from pathlib import Path

import pytest

from wildvox.config import Config, ConfigError, dump_config, from_dict, load_config, to_dict

REPO = Path(__file__).resolve().parents[1]


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
