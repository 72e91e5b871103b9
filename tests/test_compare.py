"""``wildvox compare`` on two tiny runs over a tiny wildmix-backed corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_helpers import tiny_config
from typer.testing import CliRunner

from wildvox.cli import compare as compare_module
from wildvox.cli.main import app
from wildvox.config import Config
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.training.trainer import Trainer

runner = CliRunner()


def make_corpus(wildmix: Path, root: Path, speakers: int = 5) -> Path:
    """A corpus folder sharing wildmix's audio: an ``iden_split.txt`` of 8 training (split 1)
    and 3 test (split 3) utterances of a few GCompris speakers, a ``train_list.txt`` of the same
    training utterances, and the first 24 trials of ``veri_test.txt``."""
    root.mkdir()
    (root / "wav").symlink_to(wildmix / "wav")
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    for line in (wildmix / "iden_split.txt").read_text().splitlines():
        split, rel = line.split()
        spk = rel.split("/", 1)[0]
        if spk.startswith("gc") and split in ("1", "3"):
            part = train if split == "1" else test
            part.setdefault(spk, []).append(rel)
    chosen = [s for s in train if s in test][:speakers]
    iden = [f"1 {r}" for s in chosen for r in train[s][:8]]
    iden += [f"3 {r}" for s in chosen for r in test[s][:3]]
    (root / "iden_split.txt").write_text("\n".join(iden) + "\n")
    lst = [f"{s} {r}" for s in chosen for r in train[s][:8]]
    (root / "train_list.txt").write_text("\n".join(lst) + "\n")
    trials = (wildmix / "veri_test.txt").read_text().splitlines()[:24]
    (root / "veri_test.txt").write_text("\n".join(trials) + "\n")
    return root


def train_run(wildmix: Path, tmp: Path, corpus: Path, run: str, extra: list[str]) -> Path:
    cfg: Config = tiny_config(wildmix, tmp, ["train.epochs=1", "train.val_max_utts=0", *extra])
    train = [u for c in cfg.dataset.train for u in load_corpus(c)]
    Trainer(cfg, tmp / run, train).fit()
    return tmp / run


@pytest.fixture(scope="module")
def two_runs(wildmix: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    corpus = make_corpus(wildmix, tmp / "corpus")
    iden = f"dataset.train=[{{root: {corpus}, list: iden_split.txt, splits: [1]}}]"
    other = f"dataset.train=[{{root: {corpus}, list: train_list.txt}}]"
    run_a = train_run(wildmix, tmp, corpus, "run_a", [iden])
    run_b = train_run(wildmix, tmp, corpus, "run_b", [other, "model.pooling=tstp"])
    return corpus, run_a, run_b


def evaluate_cli(model: Path, corpus: Path) -> dict[str, dict[str, float]]:
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(corpus), "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, dict[str, float]] = json.loads(res.stdout)
    return out


def table_rows(md: str) -> list[list[str]]:
    """Data rows of the report's first markdown table (the results)."""
    lines = md.split("## Results", 1)[1].split("## Setup", 1)[0].strip().splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_compare_rows_match_evaluate(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    corpus, run_a, run_b = two_runs
    report, figures = tmp_path / "report.md", tmp_path / "report.json"
    args = ["compare", str(run_a), str(run_b), "--data", str(corpus), "-o", str(report)]
    res = runner.invoke(app, [*args, "--json", str(figures), "--title", "Tiny"])
    assert res.exit_code == 0, res.output
    md = report.read_text()
    assert md.startswith("# Tiny")
    rows = table_rows(md)
    assert [r[0] for r in rows] == ["run_a", "run_b"]
    header = md.split("## Results", 1)[1].strip().splitlines()[0]
    cols = [c.strip() for c in header.strip("|").split("|")]
    cell = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
    assert cell["run_a"]["pooling"] == "sap" and cell["run_b"]["pooling"] == "tstp"
    assert cell["run_a"]["train utts"] == "40" and cell["run_a"]["updates"] == "5"

    data = json.loads(figures.read_text())["runs"]
    ref_a, ref_b = evaluate_cli(run_a / "model", corpus), evaluate_cli(run_b / "model", corpus)
    for name, ref in (("run_a", ref_a), ("run_b", ref_b)):
        for key in ("eer", "min_dcf_0.01", "min_dcf_0.05"):
            # `evaluate --json` prints values rounded to 4 decimals
            assert data[name]["verification"][key] == pytest.approx(
                ref["verification"][key], abs=1e-4
            )
        assert cell[name]["EER"] == f"{100 * ref['verification']['eer']:.2f} %"
        assert cell[name]["MinDCF0.01"] == f"{ref['verification']['min_dcf_0.01']:.4f}"
    # run_a trained on iden_split 1 of this corpus: its head identifies the split-3 utterances
    top1 = ref_a["identification"]["top1"]
    assert data["run_a"]["identification"]["top1"] == pytest.approx(top1, abs=1e-4)
    assert cell["run_a"]["top-5"] == f"{100 * ref_a['identification']['top5']:.2f} %"
    # run_b trained on another list: no identification figures in the table
    assert data["run_b"]["identification"] is None and cell["run_b"]["top-1"] == "n/a"
    assert ref_b["identification"]["utterances"] > 0


def test_compare_rerun_reads_the_cache_and_keeps_notes(
    two_runs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, run_a, _ = two_runs
    report = tmp_path / "report.md"
    args = ["compare", str(run_a), "--data", str(corpus), "-o", str(report)]
    assert runner.invoke(app, args).exit_code == 0
    first = table_rows(report.read_text())
    assert (run_a / "eval" / "veri_test.npz").is_file()
    report.write_text(report.read_text() + "\n<!-- notes -->\nHand-written caveats.\n")

    def no_evaluation(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated again despite the cache")

    monkeypatch.setattr(compare_module, "evaluate_verification", no_evaluation)
    monkeypatch.setattr(compare_module, "evaluate_identification", no_evaluation)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert table_rows(text) == first
    assert text.count("Hand-written caveats.") == 1 and text.count("## Results") == 1
    # --fresh recomputes (and so reaches the patched evaluation)
    assert runner.invoke(app, [*args, "--fresh"]).exit_code != 0


def test_compare_rejects_a_folder_without_model(wildmix: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    args = ["compare", str(tmp_path / "empty"), "--data", str(wildmix)]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "r.md")])
    assert res.exit_code == 2
    assert "no usable exported model" in " ".join(res.output.split())
    assert not (tmp_path / "r.md").exists()
