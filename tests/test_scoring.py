"""Embedding files, cosine scoring, AS-Norm, PLDA, quality measures and fusion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from wildvox.audio.vad import energy_vad, silero_available, speech_duration, speech_segments
from wildvox.metrics.verification import compute_cllr, compute_eer
from wildvox.scoring.asnorm import (
    asnorm,
    asnorm_from_stats,
    cohort_stats,
    make_cohort,
    trial_stats,
)
from wildvox.scoring.calibration import LogisticCalibrator
from wildvox.scoring.cosine import cosine_score_pairs, enroll_mean, length_normalize, score_trials
from wildvox.scoring.embeddings import (
    EmbeddingFileError,
    EmbeddingSet,
    load_embeddings,
    save_embeddings,
)
from wildvox.scoring.fusion import LogisticFusion, average_fusion
from wildvox.scoring.plda import PLDA, NotFittedError
from wildvox.scoring.quality import duration_quality, imposter_mean_quality

# ---------------------------------------------------------------- embedding files


def test_embeddings_roundtrip_and_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = ["id1/s1/00001.opus", "id1/s2/00001.opus", "id2/s1/00003.opus"]
    emb = rng.normal(size=(3, 8)).astype(np.float32)
    dur = np.array([2.5, 7.0, 3.25], dtype=np.float32)
    path = tmp_path / "sub" / "emb.npz"
    save_embeddings(path, ids, emb, dur)
    assert [p.name for p in path.parent.iterdir()] == ["emb.npz"]  # no temp file left
    got = load_embeddings(path)
    assert got.ids == ids and got.dim == 8 and len(got) == 3
    np.testing.assert_array_equal(got.embeddings, emb)
    assert got.durations is not None
    np.testing.assert_array_equal(got.durations, dur)
    np.testing.assert_array_equal(got.index([ids[2], ids[0]]), [2, 0])
    with pytest.raises(KeyError, match=r"2 id\(s\) have no embedding.*nope"):
        got.index([ids[0], "nope/a/1.wav", "nope/b/2.wav"])
    save_embeddings(path, ids[:2], emb[:2])
    assert load_embeddings(path).durations is None


def test_bad_embedding_files(tmp_path: Path) -> None:
    emb = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="duplicate"):
        save_embeddings(tmp_path / "a.npz", ["x", "x"], emb)
    with pytest.raises(ValueError, match="NaN"):
        save_embeddings(tmp_path / "a.npz", ["x", "y"], np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="3 ids for 2"):
        save_embeddings(tmp_path / "a.npz", ["x", "y", "z"], emb)
    assert not (tmp_path / "a.npz").exists()

    np.savez(tmp_path / "b.npz", ids=np.array(["x", "y"]), embeddings=np.zeros((3, 4)))
    with pytest.raises(EmbeddingFileError, match=r"b.npz.*2 ids for 3"):
        load_embeddings(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", embeddings=emb)
    with pytest.raises(EmbeddingFileError, match=r"c.npz.*missing.*ids"):
        load_embeddings(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", ids=np.array(["x", "y"], dtype=object), embeddings=emb)
    with pytest.raises(EmbeddingFileError, match=r"d.npz"):
        load_embeddings(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_text("not a zip")
    with pytest.raises(EmbeddingFileError, match=r"e.npz"):
        load_embeddings(tmp_path / "e.npz")
    with pytest.raises(EmbeddingFileError, match="not found"):
        load_embeddings(tmp_path / "missing.npz")


# ---------------------------------------------------------------- cosine


def test_cosine_scoring() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 16))
    n = length_normalize(x)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    assert np.all(length_normalize(np.zeros((1, 3))) == 0.0)
    y = x[::-1]
    ref = np.array([x[i] @ y[i] / np.linalg.norm(x[i]) / np.linalg.norm(y[i]) for i in range(5)])
    np.testing.assert_allclose(cosine_score_pairs(x, x[::-1]), ref, atol=1e-12)
    emb = EmbeddingSet([f"u{i}" for i in range(5)], x.astype(np.float32))
    got = score_trials(emb, ["u0", "u1", "u4"], ["u4", "u3", "u0"])
    np.testing.assert_allclose(got, ref[[0, 1, 4]], atol=1e-6)
    with pytest.raises(KeyError, match="u9"):
        score_trials(emb, ["u0"], ["u9"])
    with pytest.raises(ValueError, match="dimension mismatch"):
        cosine_score_pairs(x, x[:, :8])
    other = EmbeddingSet(["v0"], np.ones((1, 8), np.float32))
    with pytest.raises(ValueError, match="dimension mismatch"):
        score_trials(emb, ["u0"], ["v0"], test_emb=other)
    with pytest.raises(ValueError, match="2 enroll ids but 1"):
        score_trials(emb, ["u0", "u1"], ["u1"])


def test_enroll_mean() -> None:
    e = np.array([[3.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(enroll_mean(e), [0.5, 0.5])
    # Weights 3 s and 1 s: (3 * [1, 0] + 1 * [0, 1]) / 4.
    np.testing.assert_allclose(enroll_mean(e, [3.0, 1.0]), [0.75, 0.25])
    with pytest.raises(ValueError, match="durations"):
        enroll_mean(e, [1.0])


# ---------------------------------------------------------------- AS-Norm


def naive_asnorm(scores, enroll, test, cohort, top_n):  # type: ignore[no-untyped-def]
    """Per-trial loop straight from the formula (Cerizza eq. 2)."""
    c = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    out = []
    for s, e, t in zip(scores, enroll, test, strict=True):
        side = []
        for v in (e, t):
            cs = np.sort(c @ (v / np.linalg.norm(v)))[::-1][:top_n]
            side.append((s - cs.mean()) / cs.std())
        out.append(0.5 * (side[0] + side[1]))
    return np.array(out)


def test_asnorm_equals_naive_loop() -> None:
    rng = np.random.default_rng(2)
    utts = rng.normal(size=(30, 12))
    cohort = rng.normal(size=(40, 12))
    e_idx = rng.integers(0, 30, 80)
    t_idx = rng.integers(0, 30, 80)
    scores = cosine_score_pairs(utts[e_idx], utts[t_idx])
    for top_n in (5, 40):
        ref = naive_asnorm(scores, utts[e_idx], utts[t_idx], cohort, top_n)
        # Per-trial matrices (duplicate rows found automatically) ...
        got = asnorm(scores, utts[e_idx], utts[t_idx], cohort, top_n, chunk_size=7)
        np.testing.assert_allclose(got, ref, atol=1e-10)
        # ... and one shared utterance matrix with indices.
        got = asnorm(scores, utts, utts, cohort, top_n, enroll_index=e_idx, test_index=t_idx)
        np.testing.assert_allclose(got, ref, atol=1e-10)
    np.testing.assert_allclose(
        asnorm(scores, utts[e_idx], utts[t_idx], cohort, None),  # S-norm: the whole cohort
        naive_asnorm(scores, utts[e_idx], utts[t_idx], cohort, 40),
        atol=1e-10,
    )
    emb = EmbeddingSet([f"s/u{i}" for i in range(30)], utts)
    ids = np.array(emb.ids)
    got = asnorm_from_stats(
        scores, *trial_stats(emb, list(ids[e_idx]), list(ids[t_idx]), cohort, 5)
    )
    np.testing.assert_allclose(got, naive_asnorm(scores, utts[e_idx], utts[t_idx], cohort, 5))


def test_asnorm_with_constant_cohort_statistics_is_affine() -> None:
    # Embeddings [u, c0] with |u| fixed and a fixed c0; the cohort lives in the c0 subspace.
    # Every utterance then sees the same cohort scores, so AS-Norm is s -> (s - mu) / sd.
    rng = np.random.default_rng(3)
    d_u, d_c = 6, 4
    u = length_normalize(rng.normal(size=(50, d_u)))
    c0 = rng.normal(size=d_c)
    emb = np.hstack([u, np.tile(c0, (50, 1))])
    cohort = np.hstack([np.zeros((20, d_u)), rng.normal(size=(20, d_c))])
    e_idx, t_idx = rng.integers(0, 50, 60), rng.integers(0, 50, 60)
    scores = cosine_score_pairs(emb[e_idx], emb[t_idx])
    got = asnorm(scores, emb, emb, cohort, 10, enroll_index=e_idx, test_index=t_idx)
    mu, sd = cohort_stats(emb[:1], cohort, 10)
    np.testing.assert_allclose(got, (scores - mu[0]) / sd[0], atol=1e-10)
    slope, intercept = np.polyfit(scores, got, 1)
    np.testing.assert_allclose(got, slope * scores + intercept, atol=1e-10)
    assert slope == pytest.approx(1.0 / sd[0])


def test_asnorm_improves_shifted_scores_and_errors() -> None:
    # A shared direction g enters each utterance with a random weight, so some utterances
    # score high against everything; the cohort sees g too and AS-Norm removes the offset.
    rng = np.random.default_rng(0)
    n_spk, per, d = 60, 4, 32
    spk = np.repeat(np.arange(n_spk), per)
    g = rng.normal(size=d)
    emb = (
        rng.normal(size=(n_spk, d))[spk]
        + 0.7 * rng.normal(size=(spk.size, d))
        + rng.uniform(0, 2, spk.size)[:, None] * g
    )
    coh_spk = np.repeat(np.arange(200), 2)
    coh_utts = (
        rng.normal(size=(200, d))[coh_spk]
        + 0.7 * rng.normal(size=(400, d))
        + rng.uniform(0, 2, 400)[:, None] * g
    )
    cohort = make_cohort(coh_utts, coh_spk)
    assert cohort.shape == (200, d)
    e_idx, t_idx = rng.integers(0, spk.size, (2, 4000))
    keep = e_idx != t_idx
    e_idx, t_idx = e_idx[keep], t_idx[keep]
    labels = (spk[e_idx] == spk[t_idx]).astype(int)
    raw = cosine_score_pairs(emb[e_idx], emb[t_idx])
    norm = asnorm(raw, emb, emb, cohort, 20, enroll_index=e_idx, test_index=t_idx)
    assert compute_eer(norm, labels)[0] < 0.8 * compute_eer(raw, labels)[0]

    with pytest.raises(ValueError, match=r"top_n must be in \[1, 200\]"):
        asnorm(raw, emb, emb, cohort, 201, enroll_index=e_idx, test_index=t_idx)
    with pytest.raises(ValueError, match="dimension mismatch"):
        asnorm(raw, emb, emb, cohort[:, :5], 20, enroll_index=e_idx, test_index=t_idx)
    with pytest.raises(ValueError, match="enroll_index"):
        asnorm(raw, emb, emb, cohort, 20)
    with pytest.raises(ValueError, match="zero spread"):
        asnorm(raw[:3], emb[:3], emb[:3], np.ones((5, d)), 3)


def test_make_cohort_means() -> None:
    emb = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    coh = make_cohort(emb, np.array(["b", "a", "b"]))
    # Sorted speakers: a -> [0, 1]; b -> mean([1, 0], [0, 1]).
    np.testing.assert_allclose(coh, [[0.0, 1.0], [0.5, 0.5]])
    assert make_cohort(emb, [0, 0, 1], per="utterance").shape == (3, 2)
    with pytest.raises(ValueError, match="per must be"):
        make_cohort(emb, [0, 0, 1], per="session")  # type: ignore[arg-type]


# ---------------------------------------------------------------- PLDA


def gaussian_speakers(rng: np.random.Generator, n_spk: int, per: int, d: int):  # type: ignore[no-untyped-def]
    """Speaker means ~ N(0, Sb), utterances ~ N(mean, Sw), both anisotropic."""
    a_b = rng.normal(size=(d, d)) * np.linspace(1.5, 0.1, d)
    a_w = rng.normal(size=(d, d)) * np.linspace(0.2, 1.2, d)
    offset = rng.normal(size=d) * 2.0
    spk = np.repeat(np.arange(n_spk), per)
    means = rng.normal(size=(n_spk, d)) @ a_b.T
    x = offset + means[spk] + rng.normal(size=(spk.size, d)) @ a_w.T * 0.5
    return x, spk


def test_plda_beats_cosine_on_gaussian_speakers(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    d = 16
    x, spk = gaussian_speakers(rng, 260, 8, d)
    train = spk < 200
    test_x, test_spk = x[~train], spk[~train]
    e_idx, t_idx = rng.integers(0, test_spk.size, (2, 4000))
    keep = e_idx != t_idx
    e_idx, t_idx = e_idx[keep], t_idx[keep]
    labels = (test_spk[e_idx] == test_spk[t_idx]).astype(int)

    plda = PLDA().fit(x[train], spk[train])
    llr = plda.score(test_x[e_idx], test_x[t_idx])
    assert np.isfinite(llr).all()
    cos = cosine_score_pairs(test_x[e_idx], test_x[t_idx])
    eer_plda, eer_cos = compute_eer(llr, labels)[0], compute_eer(cos, labels)[0]
    assert eer_plda < eer_cos
    # Same-speaker pairs get positive LLRs on average, different-speaker pairs negative.
    assert llr[labels == 1].mean() > 0 > llr[labels == 0].mean()
    # LLR is symmetric in its arguments.
    np.testing.assert_allclose(llr, plda.score(test_x[t_idx], test_x[e_idx]), atol=1e-9)

    lda = PLDA().fit(x[train], spk[train], lda_dim=10, length_norm=False)
    assert compute_eer(lda.score(test_x[e_idx], test_x[t_idx]), labels)[0] < eer_cos

    path = tmp_path / "plda.npz"
    plda.save(path)
    loaded = PLDA.load(path)
    np.testing.assert_array_equal(loaded.score(test_x[e_idx], test_x[t_idx]), llr)


def test_plda_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        PLDA().score(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2 speakers"):
        PLDA().fit(np.random.default_rng(0).normal(size=(4, 3)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="lda_dim"):
        PLDA().fit(np.random.default_rng(0).normal(size=(6, 3)), [0, 0, 1, 1, 2, 2], lda_dim=3)
    rng = np.random.default_rng(0)
    plda = PLDA().fit(rng.normal(size=(12, 3)), np.repeat(np.arange(4), 3))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        plda.score(np.zeros((2, 4)), np.zeros((2, 4)))
    np.savez(tmp_path / "x.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"x.npz.*missing"):
        PLDA.load(tmp_path / "x.npz")
    assert math.isfinite(float(plda.score(np.ones((1, 3)), np.ones((1, 3)))[0]))


# ---------------------------------------------------------------- quality measures


def test_duration_and_imposter_quality() -> None:
    q = duration_quality([2.0, 8.0], [4.0, 1.0])
    np.testing.assert_allclose(q, np.log([[2.0, 4.0], [1.0, 8.0]]))
    np.testing.assert_array_equal(q, duration_quality([4.0, 1.0], [2.0, 8.0]))  # symmetric
    np.testing.assert_allclose(duration_quality([0.0], [1.0]), np.log([[0.1, 1.0]]))  # floor
    np.testing.assert_allclose(duration_quality([3.0], [90.0], 2.0, 10.0), np.log([[3.0, 10.0]]))
    with pytest.raises(ValueError, match="no NaN or negatives"):
        duration_quality([-1.0], [1.0])
    with pytest.raises(ValueError, match="no NaN or negatives"):
        duration_quality([np.nan], [1.0])

    rng = np.random.default_rng(6)
    utts, cohort = rng.normal(size=(10, 8)) * 3, rng.normal(size=(25, 8))
    e_idx, t_idx = rng.integers(0, 10, (2, 30))
    for metric in ("cosine", "dot"):
        c = cohort / np.linalg.norm(cohort, axis=1, keepdims=True) if metric == "cosine" else cohort
        side = []
        for idx in (e_idx, t_idx):
            v = utts[idx]
            v = v / np.linalg.norm(v, axis=1, keepdims=True) if metric == "cosine" else v
            side.append(np.sort(v @ c.T, axis=1)[:, -5:].mean(axis=1))
        ref = np.column_stack([np.minimum(*side), np.maximum(*side)])
        got = imposter_mean_quality(utts[e_idx], utts[t_idx], cohort, 5, metric)  # type: ignore[arg-type]
        np.testing.assert_allclose(got, ref, atol=1e-10)
        got = imposter_mean_quality(
            utts,
            utts,
            cohort,
            5,
            metric,
            enroll_index=e_idx,
            test_index=t_idx,  # type: ignore[arg-type]
        )
        np.testing.assert_allclose(got, ref, atol=1e-10)
    with pytest.raises(ValueError, match="metric"):
        imposter_mean_quality(utts, utts, cohort, 5, "l2")  # type: ignore[arg-type]


def synthetic_speech(sr: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Silence 1 s | voiced 2 s | silence 1.5 s | voiced 1 s | silence 0.5 s; 3 s of speech."""

    def voiced(seconds: float) -> np.ndarray:
        t = np.arange(int(seconds * sr)) / sr
        harmonics = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8))
        envelope = np.abs(np.sin(2 * np.pi * 3 * t + 0.3)) ** 0.5  # syllables, dips to 0
        return 0.3 * envelope * harmonics / 2.6

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * sr))

    x = np.concatenate([silence(1.0), voiced(2.0), silence(1.5), voiced(1.0), silence(0.5)])
    return (x + 1e-4 * rng.normal(size=x.size)).astype(np.float32), 3.0


def test_energy_vad_on_synthetic_speech() -> None:
    sr = 16000
    x, truth = synthetic_speech(sr, np.random.default_rng(7))
    mask = energy_vad(x, sr)
    assert mask.shape == (1 + (x.size - 400) // 160,)
    # No speech in the first 0.9 s; speech at 1.5 s and at 5.0 s; silence again at 3.5-4.3 s.
    assert not mask[:90].any() and mask[150] and mask[500] and not mask[350:430].any()
    est = speech_duration(x, sr, method="energy")
    assert truth - 0.1 <= est <= truth + 0.45  # 200 ms hangover after each of 2 runs
    no_hang = float(energy_vad(x, sr, hangover_ms=0).sum()) / 100
    assert no_hang < est  # hangover bridges the syllable dips
    assert speech_duration(np.zeros(sr, np.float32), sr, method="energy") == 0.0
    assert speech_duration(np.zeros(100, np.float32), sr, method="energy") == 0.0
    with pytest.raises(ValueError, match="mono"):
        speech_duration(np.zeros((2, 100)), sr)
    with pytest.raises(ValueError, match="1 NaN"):
        energy_vad(np.array([0.0, np.nan]), sr)


def test_speech_duration_on_real_speech(wildmix: Path) -> None:
    sf = pytest.importorskip("soundfile")
    # A LibriSpeech utterance (ls<reader>/<chapter>/...): seconds long, unlike the digit clips.
    first = next(iter(sorted((wildmix / "wav").glob("ls*/*/*.opus"))), None)
    if first is None:
        pytest.skip("no LibriSpeech utterance in wildmix")
    wav, sr = sf.read(first, dtype="float32")
    wav = wav if wav.ndim == 1 else wav.mean(axis=1)
    total = wav.size / sr
    energy = speech_duration(wav, sr, method="energy")
    assert 0.3 * total < energy <= total + 1e-6
    if silero_available():
        import torch

        threads = torch.get_num_threads()
        silero = speech_duration(wav, sr, method="silero")
        assert torch.get_num_threads() == threads
        assert 0.2 * total < silero <= total + 1e-6
        assert abs(silero - energy) < 0.5 * total
        segments = speech_segments(wav, sr, method="silero")
        assert all(0 <= a < b <= total + 1e-6 for a, b in segments)
        assert sum(b - a for a, b in segments) == pytest.approx(silero)


@pytest.mark.parametrize("kind", ["white", "brown", "dc", "dither", "tone", "clicks"])
def test_silero_finds_no_speech_in_noise(kind: str) -> None:
    if not silero_available():
        pytest.skip("silero-vad is not installed")
    sr, rng = 16000, np.random.default_rng(11)
    n = 3 * sr
    x = {
        "white": 0.3 * rng.standard_normal(n),
        "brown": np.cumsum(rng.standard_normal(n)) / 300,
        "dc": 0.2 + 1e-3 * rng.standard_normal(n),
        "dither": 1e-4 * rng.standard_normal(n),
        "tone": 0.5 * np.sin(2 * np.pi * 220 * np.arange(n) / sr),
        "clicks": 0.9 * (rng.random(n) < 0.001),
    }[kind].astype(np.float32)
    assert speech_duration(x, sr, method="silero") < 0.1


# ---------------------------------------------------------------- fusion


def test_fusion() -> None:
    np.testing.assert_allclose(average_fusion([[1.0, -2.0], [3.0, 0.0]]), [2.0, -1.0])
    rng = np.random.default_rng(8)
    n = 4000
    labels = np.repeat([1, 0], n)
    truth = np.where(labels == 1, 2.0, -2.0) + rng.normal(size=2 * n)
    s1 = truth + rng.normal(size=2 * n)
    s2 = 0.5 * (truth + rng.normal(size=2 * n)) + 1.0
    fusion = LogisticFusion(p_target=0.5).fit([s1, s2], labels)
    assert fusion.weights is not None and np.all(fusion.weights > 0)
    fused = fusion.transform([s1, s2])
    single = [LogisticCalibrator(p_target=0.5).fit(s, labels).transform(s) for s in (s1, s2)]
    assert compute_cllr(fused, labels) < min(compute_cllr(s, labels) for s in single) - 0.02
    assert compute_eer(fused, labels)[0] <= min(compute_eer(s, labels)[0] for s in (s1, s2))
    again = LogisticFusion.from_dict(json.loads(json.dumps(fusion.to_dict())))
    np.testing.assert_allclose(again.transform(np.column_stack([s1, s2])), fused)
    with_q = LogisticFusion().fit([s1, s2], labels, quality=np.abs(s1)[:, None])
    assert with_q.weights is not None and with_q.weights.shape == (3,)
    with pytest.raises(ValueError, match="same N trials"):
        average_fusion([s1, s2[:10]])
    with pytest.raises(ValueError, match="system 1: 1"):
        average_fusion([s1[:3], np.array([0.0, np.nan, 1.0])])
    with pytest.raises(ValueError, match="fitted on 2 systems"):
        fusion.transform([s1])
