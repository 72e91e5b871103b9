"""``wildvox calibrate-model --trials``: a calibration refitted on a user's own labeled trials,
with cross-validated false-accept / false-reject rates (issue #14, item 3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wildvox.api import PRETRAINED
from wildvox.cli.main import app
from wildvox.scoring.calibration import trial_features
from wildvox.scoring.calibration_trials import cross_validated_rates

runner = CliRunner()


def test_cross_validated_rates_hold_their_promise_on_gaussian_scores() -> None:
    rng = np.random.default_rng(5)
    n_tar, n_non = 2000, 20000
    labels = np.repeat([1, 0], [n_tar, n_non])
    scores = np.where(
        labels == 1, rng.normal(2.0, 1.0, labels.size), rng.normal(-2, 1, labels.size)
    )
    dur = rng.uniform(1.0, 8.0, (2, labels.size))
    feats = trial_features(scores, ["duration"], dur_a=dur[0], dur_b=dur[1])
    rates = cross_validated_rates(feats, labels)
    assert 0.005 <= rates["far=1%"]["far"] <= 0.02, rates
    assert rates["far=0.1%"]["far"] <= 0.003 and rates["far=1%"]["frr"] < 0.3
    assert abs(rates["eer"]["far"] - rates["eer"]["frr"]) < 0.02
    with pytest.raises(ValueError, match="both target and non-target"):
        cross_validated_rates(feats[:n_tar], labels[:n_tar])


def _trials(wildmix: Path, tmp: Path) -> Path:
    """A labeled trial file of 4 wildmix LibriSpeech speakers, paths relative to its folder."""
    clips = sorted((wildmix / "wav").glob("ls*/*/*.opus"))
    by: dict[str, list[Path]] = {}
    for c in clips:
        by.setdefault(c.parts[-3], []).append(c)
    speakers = [s for s in sorted(by) if len(by[s]) >= 4][:4]
    if len(speakers) < 4:
        pytest.skip("wildmix has too few LibriSpeech speakers with 4 clips")
    (tmp / "wav").symlink_to(wildmix / "wav")
    rel = {s: [c.relative_to(wildmix / "wav").as_posix() for c in by[s][:4]] for s in speakers}
    lines = []
    for i, s in enumerate(speakers):
        lines += [f"1 {rel[s][0]} {rel[s][1]}", f"1 {rel[s][2]} {rel[s][3]}"]
        other = speakers[(i + 1) % 4]
        lines += [f"0 {rel[s][j]} {rel[other][j]}" for j in range(4)]
    path = tmp / "my_trials.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_calibrate_model_on_own_trials_moves_thresholds(wildmix: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(PRETRAINED, model)
    before = json.loads((model / "model.json").read_text())["extra"]["calibration"]
    trials = _trials(wildmix, tmp_path)
    res = runner.invoke(app, ["calibrate-model", "--model", str(model), "--trials", str(trials)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "calibration fitted on 24 trials (8 targets, 16 non-targets)" in text
    assert "far=1%: reaches" in text and "cross-validation" in text
    assert "warning: fewer than 50 targets" in text
    after = json.loads((model / "model.json").read_text())["extra"]["calibration"]
    assert after["score"] == before["score"]  # the model's own scoring is kept
    assert after["thresholds"]["far=1%"] != pytest.approx(before["thresholds"]["far=1%"])
    assert after["trials"] == 24 and str(trials) in after["fitted_on"]
    # one class only: refused, nothing written
    one = tmp_path / "targets_only.txt"
    one.write_text("\n".join(ln for ln in trials.read_text().splitlines() if ln[0] == "1") + "\n")
    res = runner.invoke(app, ["calibrate-model", "--model", str(model), "--trials", str(one)])
    assert res.exit_code == 2
    assert "all targets; calibration needs both" in " ".join(res.output.split())
    assert json.loads((model / "model.json").read_text())["extra"]["calibration"] == after
