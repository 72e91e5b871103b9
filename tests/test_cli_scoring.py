"""``wildvox normalize``, ``calibrate``, ``fuse``, ``backend-report`` on small synthetic files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from wildvox.cli import scoring as cli_scoring
from wildvox.cli.main import app
from wildvox.data.corpora.voxceleb import speakers_of_ids
from wildvox.scoring.asnorm import asnorm, asnorm_from_stats, make_cohort, trial_stats
from wildvox.scoring.calibration import Calibration, trial_features
from wildvox.scoring.cosine import score_trials
from wildvox.scoring.embeddings import EmbeddingSet, load_embeddings, save_embeddings
from wildvox.scoring.fusion import LogisticFusion
from wildvox.scoring.score_file import (
    ScoreFileError,
    align_score_files,
    read_score_file,
    write_score_file,
)

runner = CliRunner()


def _emb(rng: np.random.Generator, prefix: str, n_spk: int, per: int, dim: int = 8) -> EmbeddingSet:
    centres = rng.normal(size=(n_spk, dim))
    ids = [f"{prefix}{s}/sess/{u:05d}.wav" for s in range(n_spk) for u in range(per)]
    x = np.repeat(centres, per, axis=0) + 0.7 * rng.normal(size=(n_spk * per, dim))
    return EmbeddingSet(ids, x.astype(np.float32), rng.uniform(0.5, 8.0, n_spk * per))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Trial embeddings (6 speakers x 4), a cohort (12 x 3) and a labeled cosine score file."""
    rng = np.random.default_rng(0)
    veri, cohort = _emb(rng, "te", 6, 4), _emb(rng, "co", 12, 3)
    paths = {"emb": tmp_path / "veri.npz", "cohort": tmp_path / "cohort.npz"}
    for e, p in ((veri, paths["emb"]), (cohort, paths["cohort"])):
        save_embeddings(p, e.ids, e.embeddings, e.durations)
    i, j = np.triu_indices(len(veri), k=1)
    enroll, test = [veri.ids[k] for k in i], [veri.ids[k] for k in j]
    spk = speakers_of_ids(veri.ids)
    labels = (spk[i] == spk[j]).astype(np.int64)
    paths["scores"] = tmp_path / "cos.txt"
    write_score_file(paths["scores"], enroll, test, score_trials(veri, enroll, test), labels)
    paths["unlabeled"] = tmp_path / "cos_nolabel.txt"
    cos = score_trials(veri, enroll, test)
    write_score_file(paths["unlabeled"], enroll, test, cos, np.full(len(cos), -1))
    return paths


def _ok(args: list[str]) -> Any:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _err(args: list[str], match: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert match in " ".join(res.output.split()), res.output


# ------------------------------------------------------------------ score files


def test_score_file_round_trip_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "s.txt"
    write_score_file(p, ["a/1", "b/2"], ["c/3", "d/4"], [0.5, -1.25], [1, 0])
    assert p.read_text() == "a/1 c/3 0.500000 1\nb/2 d/4 -1.250000 0\n"
    sf = read_score_file(p)
    assert sf.enroll == ["a/1", "b/2"] and sf.labels.tolist() == [1, 0] and sf.labeled
    write_score_file(p, ["a/1"], ["c/3"], [2.0], [-1])
    assert p.read_text() == "a/1 c/3 2.000000\n" and not read_score_file(p).labeled
    with pytest.raises(ScoreFileError, match="needs labeled trials"):
        read_score_file(p).require_labels()
    bad = {
        "a b nan 1\n": "NaN/inf scores not allowed",
        "a b x 1\n": "is not a number",
        "a b 0.1 2\n": "label must be 0 or 1",
        "a b 0.1 1\nc d 0.2\n": "1 of 2 lines have no label",
        "a b\n": "expected 'enrol test score [label]'",
        "\n": "score file is empty",
    }
    for text, message in bad.items():
        p.write_text(text)
        with pytest.raises(ScoreFileError, match=re.escape(message)):
            read_score_file(p)
    with pytest.raises(ScoreFileError, match="cannot read score file"):
        read_score_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="refusing to write 1 NaN"):
        write_score_file(p, ["a"], ["b"], [np.nan], [1])


def test_align_reorders_and_checks_trials(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    write_score_file(a, ["x", "y"], ["z", "w"], [1.0, 2.0], [1, 0])
    write_score_file(b, ["y", "x"], ["w", "z"], [20.0, 10.0], [-1, -1])
    m, labels = align_score_files([read_score_file(a), read_score_file(b)])
    np.testing.assert_array_equal(m, [[1.0, 10.0], [2.0, 20.0]])
    assert labels.tolist() == [1, 0]
    write_score_file(b, ["y", "x"], ["w", "q"], [20.0, 10.0], [-1, -1])
    with pytest.raises(ScoreFileError, match="trials differ"):
        align_score_files([read_score_file(a), read_score_file(b)])
    write_score_file(b, ["y", "x"], ["w", "z"], [20.0, 10.0], [1, 0])
    with pytest.raises(ScoreFileError, match="labels disagree"):
        align_score_files([read_score_file(a), read_score_file(b)])


# ------------------------------------------------------------------ normalize


def test_normalize_matches_asnorm_and_snorm(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "norm.txt"
    base = ["normalize", "--scores", str(files["scores"]), "--embeddings", str(files["emb"])]
    base += ["--cohort", str(files["cohort"]), "-o", str(out)]
    summary = _ok([*base, "--top-n", "5"])
    assert summary == {"trials": 276, "cohort": 12, "top_n": 5, "output": str(out)}
    sf, got = read_score_file(files["scores"]), read_score_file(out)
    emb, coh = load_embeddings(files["emb"]), load_embeddings(files["cohort"])
    cohort = make_cohort(coh.embeddings, speakers_of_ids(coh.ids))
    want = asnorm_from_stats(sf.scores, *trial_stats(emb, sf.enroll, sf.test, cohort, 5))
    np.testing.assert_allclose(got.scores, want, atol=2e-6)
    np.testing.assert_array_equal(got.labels, sf.labels)
    _ok([*base, "--method", "snorm", "--cohort-per", "utterance"])
    e_rows, t_rows = emb.index(sf.enroll), emb.index(sf.test)
    want = asnorm(sf.scores, emb.embeddings[e_rows], emb.embeddings[t_rows], coh.embeddings, None)
    np.testing.assert_allclose(read_score_file(out).scores, want, atol=2e-6)


def test_normalize_errors(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "norm.txt"
    args = ["normalize", "--scores", str(files["scores"]), "--embeddings", str(files["emb"])]
    args += ["--cohort", str(files["cohort"]), "-o", str(out)]
    _err([*args, "--top-n", "50"], "top_n must be in [1, 12]")
    rng = np.random.default_rng(1)
    save_embeddings(tmp_path / "c4.npz", ["a/1", "b/1"], rng.normal(size=(2, 4)))
    _err([*args[:-4], "--cohort", str(tmp_path / "c4.npz"), "-o", str(out), "--top-n", "1"],
         "dimension mismatch")  # fmt: skip
    save_embeddings(tmp_path / "flat.npz", ["u1", "u2"], rng.normal(size=(2, 8)))
    _err([*args[:-4], "--cohort", str(tmp_path / "flat.npz"), "-o", str(out)],
         "--cohort-per speaker needs speaker ids")  # fmt: skip
    bad = tmp_path / "bad.txt"
    bad.write_text("te0/sess/00000.wav nobody/x/1.wav 0.3 1\n")
    _err(["normalize", "--scores", str(bad), *args[3:]], "1 id(s) have no embedding")
    bad.write_text("te0/sess/00000.wav te0/sess/00001.wav nan 1\n")
    _err(["normalize", "--scores", str(bad), *args[3:]], "NaN/inf scores not allowed")
    _err([*args[:4], str(tmp_path / "none.npz"), *args[5:]], "embedding file not found")
    assert not out.exists()


# ------------------------------------------------------------------ calibrate


def test_calibrate_train_and_apply_round_trip(files: dict[str, Path], tmp_path: Path) -> None:
    cal, llr = tmp_path / "cal.json", tmp_path / "llr.txt"
    q = ["--quality", "duration", "--quality", "imposter", "--embeddings", str(files["emb"])]
    q += ["--cohort", str(files["cohort"]), "--top-n", "5"]
    fit = _ok(["calibrate", "--train", str(files["scores"]), *q, "-o", str(cal)])
    record = json.loads(cal.read_text())
    assert record["quality"] == ["duration", "imposter"]
    assert len(record["calibrator"]["weights"]) == 5
    assert fit["fit"]["cllr"] < 1.0
    applied = _ok(["calibrate", "--apply", str(cal), "--scores", str(files["unlabeled"]),
                   "--embeddings", str(files["emb"]), "--cohort", str(files["cohort"]),
                   "-o", str(llr)])  # fmt: skip
    assert applied["trials"] == 276 and "metrics" not in applied
    # the same features by hand
    sf, emb = read_score_file(files["scores"]), load_embeddings(files["emb"])
    coh = load_embeddings(files["cohort"])
    c_spk = speakers_of_ids(coh.ids)
    me, _, mt, _ = trial_stats(
        emb, sf.enroll, sf.test, make_cohort(coh.embeddings, c_spk), 5, np.unique(c_spk)
    )
    assert emb.durations is not None
    rec = Calibration.from_dict(record)
    assert rec.duration_range is not None and rec.calibrator.weights is not None
    assert (rec.calibrator.weights[:3] >= 0).all()  # score and durations: never against
    qf = trial_features(
        sf.scores, ["duration", "imposter"], dur_a=emb.durations[emb.index(sf.enroll)],
        dur_b=emb.durations[emb.index(sf.test)], imp_a=me, imp_b=mt,
        duration_range=rec.duration_range,
    )  # fmt: skip
    want = rec.calibrator.transform(qf)
    got = read_score_file(llr)
    np.testing.assert_allclose(got.scores, want, atol=2e-6)
    assert not got.labeled
    plain = _ok(["calibrate", "--train", str(files["scores"]), "-o", str(cal)])
    assert len(plain["weights"]) == 1
    res = _ok(["calibrate", "--apply", str(cal), "--scores", str(files["scores"]), "-o", str(llr)])
    assert res["metrics"]["cllr"] == pytest.approx(plain["fit"]["cllr"], abs=1e-4)


def test_calibrate_errors(files: dict[str, Path], tmp_path: Path) -> None:
    cal = tmp_path / "cal.json"
    _err(["calibrate", "-o", str(cal)], "exactly one of --train")
    _err(["calibrate", "--train", str(files["unlabeled"]), "-o", str(cal)], "needs labeled trials")
    one = tmp_path / "one.txt"
    one.write_text("a/1 b/2 0.5 1\nc/3 d/4 0.7 1\n")
    _err(["calibrate", "--train", str(one), "-o", str(cal)], "all 2 trials are target")
    train = ["calibrate", "--train", str(files["scores"]), "-o", str(cal)]
    _err([*train, "--quality", "duration"], "need --embeddings")
    _err([*train, "--quality", "imposter", "--embeddings", str(files["emb"])], "needs --cohort")
    nodur = tmp_path / "nodur.npz"
    e = load_embeddings(files["emb"])
    save_embeddings(nodur, e.ids, e.embeddings)
    _err([*train, "--quality", "duration", "--embeddings", str(nodur)], "no durations stored")
    assert not cal.exists()
    cal.write_text('{"kind": "other"}')
    llr = tmp_path / "llr.txt"
    _err(["calibrate", "--apply", str(cal), "--scores", str(files["scores"]), "-o", str(llr)],
         "not a calibration file")  # fmt: skip
    _ok([*train, "--quality", "duration", "--embeddings", str(files["emb"])])
    _err(["calibrate", "--apply", str(cal), "-o", str(llr)], "--apply needs --scores")
    _err(["calibrate", "--apply", str(cal), "--scores", str(files["scores"]), "-o", str(llr)],
         "quality measures need --embeddings")  # fmt: skip


# ------------------------------------------------------------------ fuse


def test_fuse_average_and_logistic(files: dict[str, Path], tmp_path: Path) -> None:
    sf = read_score_file(files["scores"])
    other = tmp_path / "other.txt"
    noisy = 2.0 * sf.scores + np.random.default_rng(2).normal(0, 0.3, sf.scores.size)
    order = np.arange(sf.scores.size)[::-1]  # same trials, another order, no labels
    write_score_file(other, [sf.enroll[i] for i in order], [sf.test[i] for i in order],
                     noisy[order], -np.ones(order.size, np.int64))  # fmt: skip
    out = tmp_path / "fused.txt"
    res = _ok(["fuse", str(files["scores"]), str(other), "-o", str(out)])
    fused = read_score_file(out)
    np.testing.assert_allclose(fused.scores, (sf.scores + noisy) / 2, atol=2e-6)
    assert fused.labels.tolist() == sf.labels.tolist() and "metrics" in res
    res = _ok(["fuse", str(files["scores"]), str(other), "--method", "logistic", "-o", str(out)])
    want = LogisticFusion().fit([sf.scores, noisy], sf.labels).transform([sf.scores, noisy])
    np.testing.assert_allclose(read_score_file(out).scores, want, atol=2e-6)
    assert "optimistic" in res["fitted on"] and len(res["weights"]) == 2
    trained = ["--train", str(files["scores"]), "--train", str(files["scores"])]
    res = _ok(["fuse", str(files["scores"]), str(other), "--method", "logistic", *trained,
               "-o", str(out)])  # fmt: skip
    assert res["fitted on"] == "train files"


def test_fuse_errors(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fused.txt"
    _err(["fuse", str(files["scores"]), "-o", str(out)], "at least two score files")
    short = tmp_path / "short.txt"
    short.write_text(files["scores"].read_text().splitlines()[0] + "\n")
    _err(["fuse", str(files["scores"]), str(short), "-o", str(out)], "trials differ")
    two = [str(files["unlabeled"]), str(files["unlabeled"])]
    _err(["fuse", *two, "--method", "logistic", "-o", str(out)], "needs labeled trials")
    _err(["fuse", *two, "--method", "logistic", "--train", str(files["scores"]), "-o", str(out)],
         "1 --train files for 2 systems")  # fmt: skip
    assert not out.exists()


# ------------------------------------------------------------------ backend-report


def test_backend_report_command_writes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's glue on a fake corpus; the model and its embeddings are synthetic."""
    rng = np.random.default_rng(3)
    train, veri = _emb(rng, "tr", 14, 5), _emb(rng, "te", 6, 4)
    root = tmp_path / "corpus"
    (root / "wav").mkdir(parents=True)
    (root / "iden_split.txt").write_text("".join(f"1 {i}\n" for i in train.ids))
    for i in train.ids:
        (root / "wav" / i).parent.mkdir(parents=True, exist_ok=True)
        (root / "wav" / i).write_bytes(b"")
    spk = speakers_of_ids(veri.ids)
    a, b = np.triu_indices(len(veri), k=1)
    pairs = zip(a.tolist(), b.tolist(), strict=True)
    lines = [f"{int(spk[x] == spk[y])} {veri.ids[x]} {veri.ids[y]}\n" for x, y in pairs]
    (root / "veri_test.txt").write_text("".join(lines))
    both = dict(zip([*train.ids, *veri.ids], [*train.embeddings, *veri.embeddings], strict=True))
    assert train.durations is not None and veri.durations is not None
    durs = dict(zip([*train.ids, *veri.ids], [*train.durations, *veri.durations], strict=True))

    def fake_embed(model: Any, root_: Path, ids: list[str], **kw: Any) -> EmbeddingSet:
        return EmbeddingSet(ids, np.stack([both[i] for i in ids]), [durs[i] for i in ids])

    monkeypatch.setattr(cli_scoring, "load_exported", lambda p: SimpleNamespace(model_id="m1"))
    monkeypatch.setattr(cli_scoring, "embed_ids", fake_embed)
    out = tmp_path / "report"
    rep = _ok(["backend-report", "--model", str(tmp_path), "--data", str(root), "--out", str(out),
               "--per-speaker", "4", "--top-n", "5", "--plda-dim", "4",
               "--calibration-trials", "200"])  # fmt: skip
    assert rep["setup"]["training utterances"] == 14 * 4 and rep["setup"]["model id"] == "m1"
    assert {p.name for p in out.iterdir()} == {
        "report.json", "report.md", "det.png", "scores", "embeddings"
    }  # fmt: skip
    assert len(load_embeddings(out / "embeddings" / "train.npz")) == 56
    cos = read_score_file(out / "scores" / "cosine.txt")
    assert cos.labeled and len(cos.scores) == len(a)
    assert (out / "scores" / "asnorm_quality-aware_llr.txt").is_file()
    _err(["backend-report", "--model", str(tmp_path), "--data", str(tmp_path / "no")],
         "corpus folder not found")  # fmt: skip
