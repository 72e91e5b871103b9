"""Logistic calibration, quality-aware calibration and calibration-trial construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from wildvox.metrics.verification import compute_cllr, compute_min_cllr
from wildvox.scoring import calibration_trials as calibration
from wildvox.scoring.calibration import Calibration, LogisticCalibrator, trial_features
from wildvox.scoring.calibration_trials import (
    TRIAL_KINDS,
    build_calibration_trials,
    fit_model_calibration,
)
from wildvox.scoring.plda import NotFittedError


def calibrated_llrs(
    rng: np.random.Generator, n: int, mu: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Targets ~ N(mu, 2 mu), non-targets ~ N(-mu, 2 mu): these scores are exact LLRs."""
    sd = math.sqrt(2.0 * mu)
    llr = np.concatenate([rng.normal(mu, sd, n), rng.normal(-mu, sd, n)])
    return llr, np.repeat([1, 0], n)


@pytest.mark.parametrize("p_target", [0.05, 0.5])
def test_calibration_of_calibrated_llrs_is_near_identity(p_target: float) -> None:
    llr, labels = calibrated_llrs(np.random.default_rng(0), 20000)
    cal = LogisticCalibrator(p_target=p_target).fit(llr, labels)
    assert cal.weights is not None and cal.bias is not None
    assert cal.weights[0] == pytest.approx(1.0, abs=0.05)
    assert cal.bias == pytest.approx(0.0, abs=0.1)
    assert compute_cllr(cal.transform(llr), labels) == pytest.approx(
        compute_cllr(llr, labels), abs=2e-3
    )


def test_calibration_recovers_affine_map_and_matches_sklearn() -> None:
    llr, labels = calibrated_llrs(np.random.default_rng(1), 5000)
    scores = (llr - 1.0) / 3.0  # llr = 3 * score + 1
    p = 0.2
    cal = LogisticCalibrator(p_target=p).fit(scores, labels)
    assert cal.weights is not None and cal.bias is not None
    assert cal.weights[0] == pytest.approx(3.0, rel=0.05)
    assert cal.bias == pytest.approx(1.0, abs=0.1)
    assert compute_cllr(cal.transform(scores), labels) < compute_cllr(scores, labels)
    # Independent solver: sklearn with per-trial weights p / N_tar and (1 - p) / N_non, whose
    # intercept also absorbs the prior log-odds logit(p).
    n_tar, n_non = labels.sum(), (1 - labels).sum()
    sw = np.where(labels == 1, p / n_tar, (1 - p) / n_non) * labels.size
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000)
    sk.fit(scores[:, None], labels, sample_weight=sw)
    assert cal.weights[0] == pytest.approx(sk.coef_[0, 0], rel=1e-4)
    assert cal.bias == pytest.approx(sk.intercept_[0] - math.log(p / (1 - p)), abs=1e-4)


def test_quality_aware_calibration_removes_quality_shift() -> None:
    # Raw score = true LLR + 3 * q for a quality measure q in [0, 1]; a score-only calibrator
    # cannot undo the shift, [score, q] can (weights ~ [1, -3]).
    rng = np.random.default_rng(2)
    llr, labels = calibrated_llrs(rng, 10000)
    q = rng.random(llr.size)
    raw = llr + 3.0 * q
    feats = np.column_stack([raw, q])
    plain = LogisticCalibrator(p_target=0.5).fit(raw, labels)
    aware = LogisticCalibrator(p_target=0.5).fit(feats, labels)
    assert aware.weights is not None
    np.testing.assert_allclose(aware.weights, [1.0, -3.0], atol=0.15)
    c_plain = compute_cllr(plain.transform(raw), labels)
    c_aware = compute_cllr(aware.transform(feats), labels)
    assert c_aware < c_plain - 0.02
    assert c_aware == pytest.approx(compute_cllr(llr, labels), abs=5e-3)
    assert compute_min_cllr(aware.transform(feats), labels) < compute_min_cllr(raw, labels)


def test_calibrator_serialisation_and_errors() -> None:
    llr, labels = calibrated_llrs(np.random.default_rng(3), 500)
    feats = np.column_stack([llr, np.abs(llr)])
    cal = LogisticCalibrator(p_target=0.1, l2=1e-3).fit(feats, labels)
    d = json.loads(json.dumps(cal.to_dict()))
    again = LogisticCalibrator.from_dict(d)
    np.testing.assert_allclose(again.transform(feats), cal.transform(feats))
    assert again.p_target == 0.1 and again.l2 == 1e-3

    with pytest.raises(ValueError, match="not a logistic calibrator"):
        LogisticCalibrator.from_dict({**d, "extra": 1})
    with pytest.raises(ValueError, match="finite"):
        LogisticCalibrator.from_dict({**d, "weights": [float("nan"), 1.0]})
    with pytest.raises(NotFittedError):
        LogisticCalibrator().transform(llr)
    with pytest.raises(ValueError, match="expected 2 feature"):
        cal.transform(llr)
    with pytest.raises(ValueError, match="all 3 trials are target"):
        LogisticCalibrator().fit([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="NaN/inf in 1 trial"):
        LogisticCalibrator().fit([0.1, float("nan"), 0.3], [1, 0, 1])
    with pytest.raises(ValueError, match="p_target"):
        LogisticCalibrator(p_target=0.0)


# ---------------------------------------------------------------- calibration trials


def corpus(rng: np.random.Generator, n_spk: int, per: int) -> tuple[np.ndarray, np.ndarray]:
    speakers = np.repeat([f"id{i:05d}" for i in range(n_spk)], per)
    durations = rng.uniform(1.0, 15.0, speakers.size)
    return speakers, durations


def check_trials(tr: calibration.CalibrationTrials, speakers, durations) -> None:  # type: ignore[no-untyped-def]
    assert np.all(tr.enroll != tr.test)
    same = speakers[tr.enroll] == speakers[tr.test]
    np.testing.assert_array_equal(same, tr.labels == 1)
    pairs = set(zip(tr.enroll.tolist(), tr.test.tolist(), strict=True))
    assert len(pairs) == tr.labels.size
    short = {"short": lambda d: (d >= 2.0) & (d < 6.0), "long": lambda d: d >= 6.0}
    for k, kind in enumerate(TRIAL_KINDS):
        sel = tr.kind == k
        a, b = kind.split("-")
        da, db = durations[tr.enroll[sel]], durations[tr.test[sel]]
        if a == b:
            assert np.all(short[a](da)) and np.all(short[b](db))
        else:  # short side first
            assert np.all(short["short"](da)) and np.all(short["long"](db))
        assert tr.labels[sel].sum() * 2 == sel.sum()  # balanced


@pytest.mark.parametrize("enumerate_limit", [2_000_000, 0])
def test_calibration_trials_counts_and_constraints(
    enumerate_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # enumerate_limit 0 forces the rejection-sampling path.
    monkeypatch.setattr(calibration, "_ENUMERATE_LIMIT", enumerate_limit)
    rng = np.random.default_rng(4)
    speakers, durations = corpus(rng, 60, 12)
    tr = build_calibration_trials(speakers, durations, rng, n_per_class=400)
    check_trials(tr, speakers, durations)
    np.testing.assert_array_equal(np.bincount(tr.kind, minlength=3), [400, 400, 400])


def test_calibration_trials_degrade_gracefully() -> None:
    rng = np.random.default_rng(5)
    # No long utterances: only short-short trials; few speakers: fewer targets than asked.
    speakers = np.repeat(np.arange(3), 3)
    durations = np.full(9, 3.0)
    tr = build_calibration_trials(speakers, durations, rng, n_per_class=1000)
    check_trials(tr, speakers, durations)
    # 3 speakers x C(3, 2) = 9 target pairs, all used; 9 non-targets to balance them.
    np.testing.assert_array_equal(np.bincount(tr.kind, minlength=3), [18, 0, 0])
    with pytest.raises(ValueError, match="no calibration trials"):
        build_calibration_trials(speakers, np.full(9, 1.0), rng, n_per_class=10)
    with pytest.raises(ValueError, match="one length"):
        build_calibration_trials(speakers, durations[:3], rng)
    with pytest.raises(ValueError, match="NaN"):
        build_calibration_trials(speakers, np.full(9, np.nan), rng)
    # Deterministic for a given seed.
    a = build_calibration_trials(speakers, durations, np.random.default_rng(0), 10)
    b = build_calibration_trials(speakers, durations, np.random.default_rng(0), 10)
    np.testing.assert_array_equal(a.enroll, b.enroll)


def test_open_set_identification_threshold_bounds_the_impostor_rate() -> None:
    """With N enrolled speakers an impostor is accepted when the best of N non-target LLRs
    passes; far=X% for identification keeps that rate at about X."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    speakers = np.repeat(np.arange(40), 12)
    emb = centres[speakers] + 0.9 * rng.normal(size=(len(speakers), 16))
    durations = rng.uniform(1.0, 8.0, len(speakers))
    cal = fit_model_calibration(emb, durations, speakers.astype(str), n_per_class=4000)
    assert cal.identification_threshold("far=1%", 1) == pytest.approx(cal.threshold("far=1%"))
    assert cal.identification_threshold("eer", 16) == cal.threshold("eer")
    strict = cal.identification_threshold("far=1%", 16)
    assert strict > cal.threshold("far=1%")
    # simulate: the best of 16 impostor LLRs drawn from the calibration's non-target quantiles
    q = cal.nontarget_quantiles
    draws = np.interp(rng.uniform(size=(20000, 16)), np.linspace(0, 1, len(q)), q)
    accepted = float((draws.max(axis=1) >= strict).mean())
    assert 0.003 < accepted < 0.02  # about 1 %, not the ~15 % of the per-trial threshold
    with pytest.raises(ValueError, match="unknown operating point"):
        cal.identification_threshold("far=lots", 4)
    with pytest.raises(ValueError, match="enrolled"):
        cal.identification_threshold("far=1%", 0)


def _duration_shifted_trials(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Scores whose non-targets rise with the longer side's duration: an unconstrained
    calibrator learns a negative weight on log(longer duration)."""
    labels = rng.integers(0, 2, n)
    d_a, d_b = rng.uniform(0.5, 20.0, n), rng.uniform(0.5, 20.0, n)
    longer = np.log(np.maximum(d_a, d_b))
    s = np.where(labels == 1, 1.5, -1.5 + 0.8 * longer) + rng.normal(0, 1, n)
    return s, d_a, d_b, labels


def test_llr_is_non_decreasing_in_each_duration() -> None:
    """Regression (#12.3): the LLR of a fixed score fell from accept to reject when the other
    side grew from 10 minutes to 1 hour; more speech must never lower the LLR."""
    rng = np.random.default_rng(21)
    s, d_a, d_b, labels = _duration_shifted_trials(rng, 6000)
    feats = trial_features(s, ["duration"], dur_a=d_a, dur_b=d_b)
    free = LogisticCalibrator().fit(feats, labels)
    assert free.weights is not None and free.weights[2] < 0  # the data pulls the wrong way
    cal = Calibration.fit(feats, labels, quality=["duration"])
    assert cal.calibrator.weights is not None and (cal.calibrator.weights >= 0).all()
    assert cal.duration_range is not None
    assert cal.duration_range[0] >= 0.5 - 1e-9 and cal.duration_range[1] <= 20.0 + 1e-9
    grid = np.array([0.0, 0.05, 0.3, 0.5, 1.0, 2.0, 5.0, 19.0, 60.0, 600.0, 3600.0])
    for score in (-2.0, -0.3, 0.0, 0.4, 3.0):
        for fixed in (0.7, 4.0, 3600.0):
            varied = cal.llr(np.full(grid.size, score), grid, np.full(grid.size, fixed))
            assert (np.diff(varied) >= -1e-12).all(), (score, fixed, varied)
            other = cal.llr(np.full(grid.size, score), np.full(grid.size, fixed), grid)
            assert (np.diff(other) >= -1e-12).all()
    # beyond the fitted range the LLR no longer moves: 10 minutes == 1 hour
    ten_min, hour = cal.llr(np.array([0.4, 0.4]), np.array([600.0, 3600.0]), np.array([5.0] * 2))
    assert ten_min == hour


def test_calibration_record_round_trip_and_refusals() -> None:
    rng = np.random.default_rng(22)
    s, d_a, d_b, labels = _duration_shifted_trials(rng, 2000)
    feats = trial_features(s, ["duration"], dur_a=d_a, dur_b=d_b)
    cal = Calibration.fit(feats, labels, quality=["duration"], score="cosine")
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(again.llr(s, d_a, d_b), cal.llr(s, d_a, d_b))
    assert again.threshold("far=1%") == pytest.approx(cal.threshold("far=1%"))
    assert cal.threshold("far=1%") > cal.threshold("eer") > cal.threshold("frr=1%")
    old = {k: v for k, v in cal.to_dict().items() if k != "kind"}
    with pytest.raises(ValueError, match="not a calibration record"):
        Calibration.from_dict(old)
    with pytest.raises(ValueError, match="3 weights for the score and 2 measure"):
        Calibration.from_dict({**cal.to_dict(), "quality": ["duration", "imposter"]})
    with pytest.raises(ValueError, match="unknown operating point 'far=150%'"):
        cal.threshold("far=150%")
