"""The AS-Norm cohort a model ships with: `wildvox calibrate-model` builds it from the training
speakers and calibrates on its scores; verify / identify / the demo then score with it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import make_slice, tiny_config
from typer.testing import CliRunner

from wildvox.api import load_model
from wildvox.cli.main import app
from wildvox.config import CorpusConfig, dump_config
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.inference.model_io import ModelFileError
from wildvox.scoring.asnorm import asnorm
from wildvox.scoring.cohort import COHORT_FILE, ScoreCohort
from wildvox.scoring.cosine import length_normalize
from wildvox.training.trainer import Trainer

runner = CliRunner()


def _held_out_list(wildmix: Path, tmp: Path, taken: set[str]) -> Path:
    """iden_split-format list of 4 FSDD speakers (not in the GCompris training slice)."""
    chosen: dict[str, list[str]] = {}
    for line in (wildmix / "iden_split.txt").read_text().splitlines():
        _, rel = line.split()
        spk = rel.split("/", 1)[0]
        if spk.startswith("fsdd") and spk not in taken and (len(chosen) < 4 or spk in chosen):
            chosen.setdefault(spk, []).append(rel)
    path = tmp / "iden_split_held_out.txt"
    path.write_text("".join(f"1 {r}\n" for rels in chosen.values() for r in rels[:6]))
    return path


@pytest.fixture(scope="module")
def calibrated(wildmix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cohort")
    cfg = tiny_config(wildmix, tmp, ["train.epochs=1"])
    utts = load_corpus(cfg.dataset.train[0])
    model_dir = Trainer(cfg, tmp / "run", utts).fit().model_dir
    make_slice(wildmix, tmp)
    held = _held_out_list(wildmix, tmp, {u.speaker.split("/", 1)[1] for u in utts})
    recipe = dataclasses.replace(
        cfg, calibration=(CorpusConfig(root=str(wildmix), list=str(held), splits=(1,)),)
    )
    (tmp / "recipe.yaml").write_text(dump_config(recipe))
    args = ["calibrate-model", "--model", str(model_dir), "-c", str(tmp / "recipe.yaml")]
    result = runner.invoke(app, [*args, "--data", str(wildmix), "--top-n", "4"])
    assert result.exit_code == 0, result.output
    assert "AS-Norm cohort: 6 training speakers, top 4" in result.output
    return model_dir


def test_calibrate_model_ships_a_cohort_and_scores_use_it(
    calibrated: Path, wildmix: Path, tmp_path: Path
) -> None:
    m = load_model(calibrated, store=tmp_path / "s.sqlite")
    assert m.scoring == "as-norm" and m.cohort is not None
    assert m.cohort.embeddings.shape == (6, 32) and m.cohort.top_n == 4
    assert m.calibration is not None and m.calibration.score == f"as-norm:{m.cohort.digest}"
    a, b = sorted((wildmix / "wav" / "gcast-xandru-osuna").rglob("*.opus"))[:2]
    v = m.verify(a, b)
    ea, eb = length_normalize(np.stack([m.embed(a), m.embed(b)]))
    assert v.cosine == pytest.approx(float(ea @ eb), abs=1e-5)
    expected = asnorm(np.array([ea @ eb]), ea[None], eb[None], m.cohort.embeddings, 4)
    assert v.score == pytest.approx(float(expected[0]), rel=1e-3)
    # identification scores with the same normalisation, and ranks by it
    m.enroll("alice", [a])
    m.enroll("bob", sorted((wildmix / "wav" / "ls1998").rglob("*.opus"))[:1])
    r = m.identify(b, top_k=2)
    scores = [c.score for c in r.candidates]
    assert scores == sorted(scores, reverse=True)
    alice = next(c for c in r.candidates if c.name == "alice")
    assert alice.score == pytest.approx(v.score, rel=1e-3)  # one enrolment utterance: same trial
    m.close()


def test_cohort_and_calibration_must_agree(calibrated: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(calibrated, copy)
    (copy / COHORT_FILE).unlink()
    with pytest.raises(ModelFileError, match="fitted on as-norm"):
        load_model(copy)
    rng = np.random.default_rng(0)
    ScoreCohort.from_embeddings(rng.normal(size=(6, 32)), 4).save(copy)
    with pytest.raises(ModelFileError, match="calibrate-model"):
        load_model(copy)  # another cohort: the calibration does not fit its scores
    ScoreCohort.from_embeddings(rng.normal(size=(6, 16)), 4).save(copy)
    with pytest.raises(ModelFileError, match="cohort is 16-d"):
        load_model(copy)
    (copy / COHORT_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a valid cohort file"):
        load_model(copy)


def test_cohort_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="top_n"):
        ScoreCohort(np.eye(3, dtype=np.float32), top_n=4)
    with pytest.raises(ValueError, match="C >= 2"):
        ScoreCohort(np.ones((1, 3), dtype=np.float32))
    c = ScoreCohort.from_embeddings(np.eye(3), top_n=10)
    assert c.top_n == 3  # capped at the cohort size
