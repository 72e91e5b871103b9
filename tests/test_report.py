"""wildvox report (#17, first part): the SVM baseline, gender-preserving subsets, Table I and
Figure 1 on a slice of wildmix through the CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wildvox.cli.main import app
from wildvox.data.corpora.voxceleb import read_iden_split, read_meta, speaker_of
from wildvox.data.trials import read_trials
from wildvox.reports.paper_data import (
    corpus_files,
    sample_subset,
    speakers_with_files,
    subset_trials,
    table_one,
    write_subset_lists,
)
from wildvox.reports.paper_models import svm_baseline

runner = CliRunner()


def test_svm_baseline_separable_features_top1_is_one() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=20.0, size=(12, 40))
    y = np.repeat(np.arange(12), 30)
    x = centres[y] + rng.normal(size=(len(y), 40))
    res = svm_baseline(x[::3], y[::3], np.delete(x, np.s_[::3], 0), np.delete(y, np.s_[::3]))
    assert res["top1"] == 1.0 and res["top5"] == 1.0 and res["macro_f1"] == 1.0
    assert res["classes"] == 12 and res["train utterances"] == 120


def test_svm_baseline_refuses_unseen_test_classes() -> None:
    x = np.arange(12, dtype=float).reshape(6, 2)
    with pytest.raises(ValueError, match="no training samples"):
        svm_baseline(x, np.array([0, 0, 0, 1, 1, 1]), x[:2], np.array([0, 2]))


def _meta(males: int, females: int) -> dict[str, dict[str, str]]:
    return {
        f"id{i:04d}": {"VoxCeleb1 ID": f"id{i:04d}", "Gender": "m" if i < males else "f"}
        for i in range(males + females)
    }


def test_subset_keeps_gender_shares_and_is_seeded() -> None:
    meta = _meta(66, 54)  # VoxCeleb1's 55 % / 45 %
    a = sample_subset(meta, 20, 10, seed=7)
    assert Counter(meta[s]["Gender"] for s in a.iden) == {"m": 11, "f": 9}
    assert Counter(meta[s]["Gender"] for s in a.veri) == {"m": 5, "f": 5}  # 55/45 of the rest
    assert not set(a.iden) & set(a.veri) and len(set(a.iden)) == 20
    assert sample_subset(meta, 20, 10, seed=7) == a
    assert sample_subset(meta, 20, 10, seed=8).iden != a.iden
    pool = [s for s in meta if s.endswith(("0", "2", "4", "6", "8"))]
    assert set(sample_subset(meta, 10, 2, seed=1, iden_pool=pool).iden) <= set(pool)
    with pytest.raises(ValueError, match="only 120"):
        sample_subset(meta, 121, 0)


def test_subset_trials_have_both_labels_and_right_speakers() -> None:
    ids = [f"s{k}/x/{j}.wav" for k in range(3) for j in range(4)]
    trials = subset_trials(ids, per_utterance=2, seed=0)
    assert {lab for lab, _, _ in trials} == {0, 1}
    for lab, e, t in trials:
        assert e != t and lab == int(speaker_of(e) == speaker_of(t))


def test_table_one_shares_and_durations() -> None:
    meta = {"a": {"gender": "M", "language": "en"}, "b": {"gender": "F", "language": "de"},
            "c": {"gender": "F", "language": "en"}}  # fmt: skip
    ids = ["a/s/1", "a/s/2", "b/s/1", "c/s/1"]
    secs = {"a/s/1": 1.0, "a/s/2": 3.0, "b/s/1": 2.0, "c/s/1": 2.0}
    t = table_one(ids, ids[:3], ids[3:], secs, meta)
    full = t["full corpus"]
    assert full["speakers"] == 3 and full["samples"] == 4
    assert full["gender male"] == pytest.approx(1 / 3) and full["language en"] == pytest.approx(
        2 / 3
    )
    assert full["seconds mean"] == 2.0 and full["seconds std"] == pytest.approx(math.sqrt(0.5))
    assert t["verification set"]["gender female"] == 1.0


def _slice(wildmix: Path, dest: Path, n_iden: int = 4, n_veri: int = 4) -> Path:
    """A small VoxCeleb tree: the n_iden tested speakers with the fewest files, n_veri speakers
    of the first trials, their folders linked and the lists cut to them."""
    rows = read_iden_split(wildmix / "iden_split.txt")
    sizes = Counter(speaker_of(r) for _, r in rows)
    tested = sorted({speaker_of(r) for s, r in rows if s == 3}, key=lambda s: (sizes[s], s))
    iden = set(tested[:n_iden])
    trials = read_trials(wildmix / "veri_test.txt")
    veri = list(dict.fromkeys(speaker_of(u) for u in trials.enroll[:200]))[:n_veri]
    (dest / "wav").mkdir(parents=True)
    for s in iden | set(veri):
        (dest / "wav" / s).symlink_to(wildmix / "wav" / s)
    (dest / "iden_split.txt").write_text(
        "".join(f"{s} {r}\n" for s, r in rows if speaker_of(r) in iden)
    )
    keep = [
        f"{lab} {e} {t}\n"
        for lab, e, t in zip(trials.labels.tolist(), trials.enroll, trials.test, strict=True)
        if speaker_of(e) in veri and speaker_of(t) in veri
    ]
    (dest / "veri_test.txt").write_text("".join(keep))
    lines = (wildmix / "meta.csv").read_text().splitlines()
    (dest / "meta.csv").write_text(
        "\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split(",")[0] in iden | set(veri)])
    )
    return dest


def test_write_subset_lists_from_wildmix_meta(wildmix: Path, tmp_path: Path) -> None:
    meta = read_meta(wildmix / "meta.csv")
    pool = {speaker_of(r) for _, r in read_iden_split(wildmix / "iden_split.txt")}
    veri_pool = speakers_with_files(corpus_files(wildmix), 2)
    choice = sample_subset(meta, 10, 3, seed=2, iden_pool=pool, veri_pool=veri_pool)
    iden, veri = write_subset_lists(wildmix, choice, tmp_path)
    rows = read_iden_split(iden)
    assert {speaker_of(r) for _, r in rows} == set(choice.iden)
    assert set(rows) <= set(read_iden_split(wildmix / "iden_split.txt"))  # official splits kept
    trials = read_trials(veri)
    assert {speaker_of(u) for u in trials.utterances()} == set(choice.veri)
    assert set(trials.labels.tolist()) == {0, 1}
    assert all((wildmix / "wav" / u).is_file() for u in trials.utterances())


def test_report_quick_tiny_on_a_wildmix_slice(wildmix: Path, tmp_path: Path) -> None:
    data = _slice(wildmix, tmp_path / "corpus")
    out = tmp_path / "report"
    r = runner.invoke(app, ["report", "--data", str(data), "--quick", "--tiny", "--seed", "3",
                            "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    table = report["Table I: corpus statistics"]["table"]
    sets = ("full corpus", "identification set", "verification set")
    stats = {row["statistic"]: row for row in table}
    assert [stats["speakers"][s] for s in sets[:2]] == [8, 4]
    assert 2 <= stats["speakers"]["verification set"] <= 4
    for row in table:
        assert all(math.isfinite(row[s]) and row[s] >= 0 for s in sets), row
    for s in sets:
        assert stats["gender male"][s] + stats["gender female"][s] + stats.get(
            "gender unknown", dict.fromkeys(sets, 0.0))[s] == pytest.approx(1.0)  # fmt: skip
        assert 0 < stats["seconds mean"][s] < 60 and stats["samples"][s] > 0
    svm = report["Baseline: RBF-SVM (C = 1) on utterance-mean log-Mel"]
    assert svm["results"]["classes"] == 4 and svm["results"]["test utterances"] == 16
    assert 0.0 <= svm["results"]["top1"] <= svm["results"]["top5"] <= 1.0
    assert svm["setup"]["seed"] == 3 and "--tiny" in svm["setup"]["command"]
    fig = report["Figure 1: K-Means clusters vs true speakers (PCA plane)"]["results"]
    assert set(fig) == {"embeddings", "mean log-Mel"}
    for res in fig.values():
        assert -1.0 <= res["ARI"] <= 1.0 and 0.0 <= res["NMI"] <= 1.0 and res["clusters (K)"] == 4
        png = out / res["figure"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    md = (out / "report.md").read_text()
    for heading in ("## Table I", "## Baseline", "## Figure 1", "## Not in this report yet"):
        assert heading in md
    assert "Table II" in md and "![Figure 1, embeddings](figure1_embeddings.png)" in md
    assert not (out / "lists").exists()  # the corpus' own lists are used in place


def test_report_subset_draws_the_lists_it_uses(wildmix: Path, tmp_path: Path) -> None:
    data = _slice(wildmix, tmp_path / "corpus")
    out = tmp_path / "report"
    r = runner.invoke(app, ["report", "--data", str(data), "--tiny", "--subset", "2,2",
                            "--seed", "1", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = read_iden_split(out / "lists" / "iden_split.txt")
    iden = {speaker_of(rel) for _, rel in rows}
    veri = {speaker_of(u) for u in read_trials(out / "lists" / "veri_test.txt").utterances()}
    assert len(iden) == 2 and len(veri) == 2 and not iden & veri
    report = json.loads((out / "report.json").read_text())
    setup = report["Table I: corpus statistics"]["setup"]
    assert setup["identification speakers"].split() == sorted(iden)
    assert "--subset 2,2" in setup["command"]
    table = {row["statistic"]: row for row in report["Table I: corpus statistics"]["table"]}
    assert table["speakers"]["identification set"] == 2
    assert table["speakers"]["verification set"] == 2


def test_report_refuses_a_bad_subset(wildmix: Path) -> None:
    r = runner.invoke(app, ["report", "--data", str(wildmix), "--subset", "100"])
    assert r.exit_code == 2 and "N,M" in r.output
