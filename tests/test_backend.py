"""The scoring back-end: cohort statistics with own-speaker exclusion, quality features, speaker
folds and the back-end report (wildvox.reports.backend), on synthetic embeddings and scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wildvox.data.corpora.voxceleb import select_training_ids, speakers_of_ids
from wildvox.data.trials import Trials
from wildvox.metrics.verification import (
    compute_actual_dcf,
    compute_cllr,
    compute_eer,
    compute_min_dcf,
    llr_metrics,
)
from wildvox.reports.backend import backend_report
from wildvox.scoring.asnorm import asnorm, asnorm_from_stats, cohort_stats, make_cohort, trial_stats
from wildvox.scoring.calibration import LogisticCalibrator, trial_features
from wildvox.scoring.calibration_trials import cross_fold_llrs, speaker_folds
from wildvox.scoring.cosine import score_trials
from wildvox.scoring.embeddings import EmbeddingSet


def synth_set(
    rng: np.random.Generator,
    prefix: str,
    n_spk: int,
    per: int,
    hub: np.ndarray,
    spread: float = 3.0,
) -> EmbeddingSet:
    """Speakers around random centres; each utterance adds a random multiple of a shared "hub"
    direction, so some utterances score high against everyone (a per-utterance score offset)."""
    dim = hub.shape[0]
    centres = rng.normal(size=(n_spk, dim))
    ids = [f"{prefix}{s:03d}/sess{u % 2}/{u:05d}.wav" for s in range(n_spk) for u in range(per)]
    x = np.repeat(centres, per, axis=0) + 0.8 * rng.normal(size=(n_spk * per, dim))
    x += rng.uniform(0.0, spread, size=(n_spk * per, 1)) * hub
    durations = rng.uniform(0.5, 9.0, size=n_spk * per)
    return EmbeddingSet(ids, x.astype(np.float32), durations)


def all_pairs(emb: EmbeddingSet) -> Trials:
    spk = speakers_of_ids(emb.ids)
    i, j = np.triu_indices(len(emb), k=1)
    return Trials(
        [emb.ids[k] for k in i], [emb.ids[k] for k in j], (spk[i] == spk[j]).astype(np.int64)
    )


@pytest.fixture(scope="module")
def data() -> tuple[EmbeddingSet, EmbeddingSet, Trials]:
    rng = np.random.default_rng(0)
    hub = rng.normal(size=16)
    hub *= 4.0 / np.linalg.norm(hub)
    train = synth_set(rng, "tr", 60, 5, hub)
    veri = synth_set(rng, "te", 20, 6, hub)
    return train, veri, all_pairs(veri)


def test_speakers_of_ids() -> None:
    assert speakers_of_ids(["a/x/1.wav", "b/2.wav"]).tolist() == ["a", "b"]
    with pytest.raises(ValueError, match=r"1 id\(s\) have no 'speaker/' prefix.*plain"):
        speakers_of_ids(["a/x/1.wav", "plain.wav"])


def test_cohort_stats_leave_out_own_speaker() -> None:
    rng = np.random.default_rng(1)
    emb, cohort = rng.normal(size=(5, 8)), rng.normal(size=(6, 8))
    emb[:2] = cohort[0] + 0.1 * rng.normal(size=(2, 8))  # speaker a, next to its cohort entry
    c_spk = np.array(["a", "b", "c", "d", "e", "f"])
    spk = np.array(["a", "a", "z", "c", "z"])
    mean, std = cohort_stats(emb, cohort, 3, speakers=spk, cohort_speakers=c_spk)
    for i, s in enumerate(spk):
        m, sd = cohort_stats(emb[i : i + 1], cohort[c_spk != s], 3)
        assert mean[i] == pytest.approx(m[0]) and std[i] == pytest.approx(sd[0])
    plain = cohort_stats(emb, cohort, 3)
    assert not np.allclose(mean[:2], plain[0][:2])  # own speaker's entry was left out
    with pytest.raises(ValueError, match="top_n must be in"):
        cohort_stats(emb, cohort, 6, speakers=spk, cohort_speakers=c_spk)  # 5 once one is out
    with pytest.raises(ValueError, match="both speakers and cohort_speakers"):
        cohort_stats(emb, cohort, 3, speakers=spk)


def test_trial_stats_give_asnorm_and_it_removes_utterance_offsets(
    data: tuple[EmbeddingSet, EmbeddingSet, Trials],
) -> None:
    train, veri, trials = data
    cohort = make_cohort(train.embeddings, speakers_of_ids(train.ids))
    raw = score_trials(veri, trials.enroll, trials.test)
    stats = trial_stats(veri, trials.enroll, trials.test, cohort, 20)
    norm = asnorm_from_stats(raw, *stats)
    # no cohort speaker is a trial speaker: identical to the scoring module's AS-Norm
    c_spk = np.unique(speakers_of_ids(train.ids))
    same = trial_stats(veri, trials.enroll, trials.test, cohort, 20, c_spk)
    np.testing.assert_allclose(asnorm_from_stats(raw, *same), norm)
    e, t = veri.index(trials.enroll), veri.index(trials.test)
    got = asnorm(raw, veri.embeddings[e], veri.embeddings[t], cohort, 20)
    np.testing.assert_allclose(got, norm, atol=1e-4)  # float32 statistics
    eer_raw, eer_norm = compute_eer(raw, trials.labels)[0], compute_eer(norm, trials.labels)[0]
    assert eer_norm < 0.8 * eer_raw, (eer_raw, eer_norm)
    with pytest.raises(KeyError, match="have no embedding"):
        trial_stats(veri, ["te000/x/nope.wav"], [veri.ids[0]], cohort, 20)


def test_trial_features_are_symmetric_and_checked() -> None:
    d_e, d_t = np.array([1.0, 4.0]), np.array([2.0, 0.5])
    i_e, i_t = np.array([0.3, 0.1]), np.array([0.2, 0.4])
    both = ["duration", "imposter"]
    q = trial_features([0.5, 0.1], both, dur_a=d_e, dur_b=d_t, imp_a=i_e, imp_b=i_t)
    swapped = trial_features([0.5, 0.1], both, dur_a=d_t, dur_b=d_e, imp_a=i_t, imp_b=i_e)
    np.testing.assert_allclose(q, swapped)
    np.testing.assert_allclose(q[0], [0.5, 0.0, np.log(2.0), 0.2, 0.3])
    with pytest.raises(ValueError, match="needs the durations"):
        trial_features([0.5], ["duration"], imp_a=i_e, imp_b=i_t)
    with pytest.raises(ValueError, match="needs cohort statistics"):
        trial_features([0.5], ["imposter"], dur_a=d_e, dur_b=d_t)
    with pytest.raises(ValueError, match="unknown quality measure 'snr'"):
        trial_features([0.5], ["snr"])
    with pytest.raises(ValueError, match="no NaN or negatives"):
        trial_features([0.5, 0.1], ["duration"], dur_a=[-1.0, 1.0], dur_b=d_t)
    # 0 s is floored at 0.1 s, and a duration range clips both ends
    z = trial_features([0.5], ["duration"], dur_a=[0.0], dur_b=[50.0], duration_range=(1.0, 8.0))
    np.testing.assert_allclose(z[0], [0.5, 0.0, np.log(8.0)])


def test_llr_metrics_match_the_metric_functions() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat([1, 0], [300, 700])
    llr = np.where(labels == 1, rng.normal(2, 2, 1000), rng.normal(-2, 2, 1000))
    m = llr_metrics(llr, labels)
    assert m["eer"] == pytest.approx(compute_eer(llr, labels)[0])
    assert m["min_dcf_0.01"] == pytest.approx(compute_min_dcf(llr, labels, 0.01)[0])
    assert m["act_dcf_0.05"] == pytest.approx(compute_actual_dcf(llr, labels, 0.05))
    assert m["cllr"] == pytest.approx(compute_cllr(llr, labels))
    assert m["min_cllr"] <= m["cllr"] and m["act_dcf_0.01"] >= m["min_dcf_0.01"]
    with pytest.raises(ValueError, match="NaN"):
        llr_metrics(np.append(llr[:-1], np.nan), labels)
    with pytest.raises(ValueError, match="both target and non-target"):
        llr_metrics(llr[:300], labels[:300])


def test_quality_aware_calibration_reduces_cllr_under_duration_shift() -> None:
    rng = np.random.default_rng(3)

    def trials(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        d_e, d_t = rng.uniform(0.5, 10.0, n), rng.uniform(0.5, 10.0, n)
        shift = 2.0 * np.log(np.minimum(d_e, d_t))  # shorter inputs score lower, both classes
        s = np.where(labels == 1, 2.0, -2.0) + shift + rng.normal(0, 1, n)
        return trial_features(s, ["duration"], dur_a=d_e, dur_b=d_t), labels, s

    f_fit, y_fit, s_fit = trials(4000)
    f_ev, y_ev, s_ev = trials(4000)
    plain = LogisticCalibrator().fit(s_fit, y_fit).transform(s_ev)
    aware = LogisticCalibrator().fit(f_fit, y_fit).transform(f_ev)
    m_plain, m_aware = llr_metrics(plain, y_ev), llr_metrics(aware, y_ev)
    assert m_aware["cllr"] < 0.7 * m_plain["cllr"], (m_plain["cllr"], m_aware["cllr"])
    assert m_aware["eer"] < m_plain["eer"]


def test_speaker_folds_are_balanced_and_seeded() -> None:
    spk = [f"s{i}" for i in range(7)] * 3
    folds = speaker_folds(spk, 2, seed=5)
    assert sorted(folds) == sorted(set(spk))
    assert sorted(np.bincount(list(folds.values())).tolist()) == [3, 4]
    assert folds == speaker_folds(list(reversed(spk)), 2, seed=5)
    assert folds != speaker_folds(spk, 2, seed=6) or folds != speaker_folds(spk, 2, seed=7)
    with pytest.raises(ValueError, match="n_folds"):
        speaker_folds(["a"], 2)


def test_cross_fold_llrs_never_see_the_evaluated_fold() -> None:
    rng = np.random.default_rng(4)
    n = 600
    fe, ft = rng.integers(0, 2, n), rng.integers(0, 2, n)
    labels = rng.integers(0, 2, n)
    scores = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1, n)
    llr, mask, fits = cross_fold_llrs(scores, labels, fe, ft)
    np.testing.assert_array_equal(mask, fe == ft)
    assert np.isnan(llr[~mask]).all() and [f["fold"] for f in fits] == [0, 1]
    in0 = (fe == 0) & (ft == 0)
    assert fits[0]["fit_trials"] == int(((fe == 1) & (ft == 1)).sum())
    # flipping fold 0's labels changes fold 1's calibrator only
    flipped = labels.copy()
    flipped[in0] = 1 - flipped[in0]
    llr2, _, _ = cross_fold_llrs(scores, flipped, fe, ft)
    np.testing.assert_allclose(llr2[in0], llr[in0])
    assert not np.allclose(llr2[mask & ~in0], llr[mask & ~in0])
    one_class = labels.copy()
    one_class[(fe == 1) & (ft == 1)] = 0
    with pytest.raises(ValueError, match=r"cannot calibrate for fold 0.*target"):
        cross_fold_llrs(scores, one_class, fe, ft)


def test_select_training_ids_caps_split_one(tmp_path: Path) -> None:
    lines = [f"1 a/s1/{i:05d}.wav" for i in range(5)] + ["1 b/s1/00001.wav", "3 b/s2/00001.wav"]
    (tmp_path / "iden_split.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        path = tmp_path / "wav" / line.split()[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    ids = select_training_ids(tmp_path, per_speaker=3, seed=0)
    assert len(ids) == 4 and ids == sorted(ids) and "b/s1/00001.wav" in ids
    assert "b/s2/00001.wav" not in ids
    assert ids == select_training_ids(tmp_path, per_speaker=3, seed=0)
    with pytest.raises(ValueError, match="per_speaker"):
        select_training_ids(tmp_path, per_speaker=1)


def test_backend_report_end_to_end(
    data: tuple[EmbeddingSet, EmbeddingSet, Trials], tmp_path: Path
) -> None:
    train, veri, trials = data
    res = backend_report(
        veri, trials, train, tmp_path, top_n=20, plda_dim=10, n_per_class=400, setup={"x": 1}
    )
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep == json.loads(json.dumps(res.report))
    assert (tmp_path / "det.png").stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "optimistic" in md and "2-fold" in md and "det.png" in md
    systems = rep["systems"]
    assert set(systems) == {"cosine", "asnorm", "plda"}
    assert systems["asnorm"]["eer"] < systems["cosine"]["eer"]
    assert rep["setup"]["x"] == 1 and rep["setup"]["calibration trials"]["short-short"] == 400
    train_cal = rep["calibration on training speakers"]
    assert set(train_cal) == {"raw", "calibrated", "quality-aware"}
    # a monotone calibration keeps the EER and lowers Cllr of raw AS-Norm scores
    assert train_cal["calibrated"]["eer"] == pytest.approx(train_cal["raw"]["eer"])
    assert train_cal["calibrated"]["cllr"] < train_cal["raw"]["cllr"]
    held = rep["calibration, 2-fold by test speaker"]
    assert {"calibrated (2-fold)", "quality-aware (2-fold)", "raw (train speakers)"} <= set(held)
    for m in held.values():
        assert m["act_dcf_0.01"] >= m["min_dcf_0.01"] - 1e-12
    assert set(res.scores) >= {"cosine", "asnorm", "plda", "asnorm quality-aware llr"}
    assert all(s.shape == (len(trials),) for s in res.scores.values())
    with pytest.raises(ValueError, match="no labels"):
        backend_report(veri, Trials(["a"], ["b"], np.array([-1])), train, tmp_path)
