"""Verification and identification metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from wildvox.metrics.identification import (
    confusion_matrix,
    identification_report,
    macro_f1,
    top_k_accuracy,
)
from wildvox.metrics.verification import (
    compute_actual_dcf,
    compute_cllr,
    compute_eer,
    compute_min_cllr,
    compute_min_dcf,
    det_curve,
    verification_report,
)

# ---------------------------------------------------------------- independent references


def sk_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER where the piecewise-linear sklearn ROC crosses fnr == fpr."""
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fnr - fpr  # thresholds descending: d falls from 1 to -1
    i = int(np.flatnonzero(d >= 0)[-1])
    if d[i] == 0:
        return float(fpr[i])
    a = d[i] / (d[i] - d[i + 1])
    return float(fpr[i] + a * (fpr[i + 1] - fpr[i]))


def sk_min_dcf(scores: np.ndarray, labels: np.ndarray, p: float, c_miss=1.0, c_fa=1.0) -> float:
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    dcf = c_miss * p * (1.0 - tpr) + c_fa * (1.0 - p) * fpr
    return float(dcf.min() / min(c_miss * p, c_fa * (1.0 - p)))


def random_trials(rng: np.random.Generator, n: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random(n) < 0.3).astype(np.int64)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + 1.2 * labels
    if tied:
        scores = np.round(scores * 2.0) / 2.0  # ~15 distinct values for thousands of trials
    return scores, labels


# ---------------------------------------------------------------- EER / MinDCF


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_and_min_dcf_match_sklearn(seed: int, tied: bool) -> None:
    rng = np.random.default_rng(seed)
    scores, labels = random_trials(rng, 5000, tied)
    if tied:
        assert np.unique(scores).size < 40
    eer, _ = compute_eer(scores, labels)
    assert eer == pytest.approx(sk_eer(scores, labels), abs=1e-9)
    for p, cm, cf in [(0.01, 1.0, 1.0), (0.05, 1.0, 1.0), (0.3, 2.0, 0.5)]:
        ours, _ = compute_min_dcf(scores, labels, p_target=p, c_miss=cm, c_fa=cf)
        assert ours == pytest.approx(sk_min_dcf(scores, labels, p, cm, cf), abs=1e-9)
    rep = verification_report(scores, labels)
    assert set(rep) == {"eer", "min_dcf_0.01", "min_dcf_0.05"}
    assert rep["eer"] == pytest.approx(eer, abs=1e-12)
    assert rep["min_dcf_0.05"] == pytest.approx(sk_min_dcf(scores, labels, 0.05), abs=1e-9)


def test_tiny_tied_problems_match_sklearn() -> None:
    # Exhaustive-ish sweep of small problems with 3 score values: crossings at +inf, exact
    # zeros, all-tied classes, targets below non-targets.
    rng = np.random.default_rng(10)
    for _ in range(120):
        n = int(rng.integers(2, 12))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 3, n).astype(float)
        assert compute_eer(scores, labels)[0] == pytest.approx(sk_eer(scores, labels), abs=1e-12)
        p = float(rng.choice([0.01, 0.5, 0.9]))
        got = compute_min_dcf(scores, labels, p_target=p)[0]
        assert got == pytest.approx(sk_min_dcf(scores, labels, p), abs=1e-12)
    # Every target ties with the top non-targets or lies below: the crossing is at +inf.
    # t = 5: P_miss 1/2, P_fa 1; t = inf: 1, 0 -> alpha 1/3, EER 2/3.
    eer, thr = compute_eer([0.0, 5.0, 5.0, 5.0, 5.0], [1, 1, 0, 0, 0])
    assert eer == pytest.approx(2.0 / 3.0) and thr > 5.0


def test_ties_do_not_depend_on_order() -> None:
    rng = np.random.default_rng(5)
    scores, labels = random_trials(rng, 2000, tied=True)
    perm = rng.permutation(scores.size)
    assert compute_eer(scores, labels) == compute_eer(scores[perm], labels[perm])
    assert compute_min_dcf(scores, labels) == compute_min_dcf(scores[perm], labels[perm])
    assert compute_min_cllr(scores, labels) == pytest.approx(
        compute_min_cllr(scores[perm], labels[perm]), abs=1e-12
    )


def test_eer_hand_computed() -> None:
    # Sorted: 0.1 n, 0.35 t, 0.4 n, 0.8 t. Threshold 0.35: P_miss 0, P_fa 1/2;
    # threshold 0.4: P_miss 1/2, P_fa 1/2 -> crossing exactly at 0.4, EER 0.5.
    eer, thr = compute_eer([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert eer == pytest.approx(0.5) and thr == pytest.approx(0.4)
    # Ties: score 1 {n, t}, 2 {n, t}, 3 {t}; 3 targets, 2 non-targets.
    # thr 2: P_miss 1/3, P_fa 1/2 (d = -1/6); thr 3: P_miss 2/3, P_fa 0 (d = 2/3).
    # alpha = (1/6) / (5/6) = 0.2 -> EER = 1/2 - 0.2 * 1/2 = 0.4, threshold 2 + 0.2 = 2.2.
    eer, thr = compute_eer([1, 1, 2, 2, 3], [0, 1, 0, 1, 1])
    assert eer == pytest.approx(0.4, abs=1e-12) and thr == pytest.approx(2.2)
    # Perfect separation: EER 0; all tied: EER 0.5.
    assert compute_eer([0.0, 0.1, 0.9, 1.0], [0, 0, 1, 1])[0] == 0.0
    assert compute_eer([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 1])[0] == pytest.approx(0.5)


def test_min_dcf_hand_computed() -> None:
    # Same tied set; p = 0.5: DCF over thresholds 1, 2, 3, inf = 0.5, 5/12, 1/3, 0.5;
    # normalised by 0.5 -> min 2/3 at threshold 3.
    dcf, thr = compute_min_dcf([1, 1, 2, 2, 3], [0, 1, 0, 1, 1], p_target=0.5)
    assert dcf == pytest.approx(2.0 / 3.0) and thr == 3.0
    # p = 0.01: rejecting everything costs 0.01 -> normalised 1; threshold 3 costs
    # 0.01 * 2/3 -> 2/3. A useless system scores exactly 1 at threshold +inf.
    dcf, _ = compute_min_dcf([1, 1, 2, 2, 3], [0, 1, 0, 1, 1], p_target=0.01)
    assert dcf == pytest.approx(2.0 / 3.0)
    dcf, thr = compute_min_dcf([1.0, 1.0], [0, 1], p_target=0.01)
    assert dcf == pytest.approx(1.0) and thr == math.inf


def test_actual_dcf_hand_computed() -> None:
    llrs, labels = [-2.0, -0.5, 0.5, 3.0], [0, 1, 0, 1]
    # p = 0.5: threshold 0; miss {-0.5} = 1/2, fa {0.5} = 1/2 -> 0.5 / 0.5 = 1.
    assert compute_actual_dcf(llrs, labels, 0.5) == pytest.approx(1.0)
    # p = 0.2: threshold log 4 = 1.386; miss 1/2, fa 0 -> 0.2 * 0.5 / 0.2 = 0.5.
    assert compute_actual_dcf(llrs, labels, 0.2) == pytest.approx(0.5)
    # Actual DCF is never below MinDCF.
    rng = np.random.default_rng(3)
    s, y = random_trials(rng, 3000, tied=False)
    for p in (0.01, 0.05, 0.5):
        assert compute_actual_dcf(s, y, p) >= compute_min_dcf(s, y, p)[0] - 1e-12


# ---------------------------------------------------------------- Cllr


def test_cllr_hand_computed() -> None:
    assert compute_cllr([0.0, 0.0, 0.0], [0, 1, 1]) == pytest.approx(1.0)
    # Target llr log 3 costs log2(1 + 1/3); non-target llr -log 3 costs the same.
    assert compute_cllr([math.log(3), -math.log(3)], [1, 0]) == pytest.approx(math.log2(4 / 3))
    # Confidently wrong costs more than 1 bit.
    assert compute_cllr([-5.0, 5.0], [1, 0]) > 5.0


def test_cllr_of_calibrated_gaussian_llrs_matches_integral() -> None:
    mu = 2.0
    sd = math.sqrt(2.0 * mu)  # variance 2 mu makes N(+-mu, 2 mu) scores calibrated LLRs
    rng = np.random.default_rng(0)
    n = 200_000
    tar = rng.normal(mu, sd, n)
    non = rng.normal(-mu, sd, n)
    # By symmetry Cllr = E_tar[log2(1 + e^-x)].
    analytic, _ = integrate.quad(
        lambda x: stats.norm.pdf(x, mu, sd) * np.logaddexp(0.0, -x) / math.log(2), -40, 40
    )
    llrs = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    costs = np.logaddexp(0.0, -tar) / math.log(2)
    tol = 5 * costs.std() / math.sqrt(n)
    assert compute_cllr(llrs, labels) == pytest.approx(analytic, abs=tol)
    # Calibrated scores: min Cllr (PAV) is close to, and not above, Cllr.
    min_cllr = compute_min_cllr(llrs, labels)
    assert min_cllr <= compute_cllr(llrs, labels) + 1e-12
    assert min_cllr == pytest.approx(analytic, abs=0.01)


def test_min_cllr_hand_computed_and_against_isotonic() -> None:
    assert compute_min_cllr([1, 2, 3, 4], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert compute_min_cllr([4, 3, 2, 1], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert compute_min_cllr([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    # [1 t, 2 n, 3 t]: PAV pools the first two (posterior 1/2), third posterior 1.
    # Prior log-odds log 2 -> block llrs -log 2 and +inf.
    # Cllr = 0.5 * (log2(3) / 2 + log2(1.5)).
    expected = 0.5 * (math.log2(3) / 2 + math.log2(1.5))
    assert compute_min_cllr([1, 2, 3], [1, 0, 1]) == pytest.approx(expected)

    rng = np.random.default_rng(7)
    s, y = random_trials(rng, 4000, tied=True)
    post = IsotonicRegression(y_min=0.0, y_max=1.0).fit(s, y).predict(s)
    prior = y.mean()
    eps = 1e-300
    llr = np.log(post + eps) - np.log(1 - post + eps) - math.log(prior / (1 - prior))
    ref = (
        0.5
        * (np.mean(np.logaddexp(0, -llr[y == 1])) + np.mean(np.logaddexp(0, llr[y == 0])))
        / math.log(2)
    )
    assert compute_min_cllr(s, y) == pytest.approx(ref, abs=1e-9)


# ---------------------------------------------------------------- DET


def test_det_curve_matches_sklearn_points() -> None:
    rng = np.random.default_rng(11)
    s, y = random_trials(rng, 1000, tied=True)
    fpr, fnr, thr = det_curve(s, y)
    assert thr[-1] == math.inf and np.all(np.diff(thr) > 0)
    assert np.all(np.diff(fpr) <= 0) and np.all(np.diff(fnr) >= 0)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    # sklearn: thresholds descending with +inf first.
    np.testing.assert_allclose(fpr[::-1], sk_fpr, atol=1e-12)
    np.testing.assert_allclose(fnr[::-1], 1.0 - sk_tpr, atol=1e-12)
    np.testing.assert_allclose(thr[::-1][1:], sk_thr[1:])


# ---------------------------------------------------------------- bad input


def test_verification_bad_inputs() -> None:
    with pytest.raises(ValueError, match="2 NaN"):
        compute_eer([0.1, np.nan, np.nan, 0.3], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="infinite"):
        compute_min_dcf([0.1, np.inf, 0.2, 0.3], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="all 3 trials are target"):
        compute_eer([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="non-target"):
        verification_report([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="3 trials but labels has 2"):
        compute_eer([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        compute_eer(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"0 \(non-target\) or 1"):
        compute_eer([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf([0.1, 0.2], [0, 1], p_target=1.5)
    with pytest.raises(ValueError, match="NaN"):
        compute_cllr([np.nan, 0.0], [0, 1])


# ---------------------------------------------------------------- identification


def test_identification_against_sklearn() -> None:
    rng = np.random.default_rng(2)
    n, c = 300, 12
    labels = rng.integers(0, c, n)
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), labels] += 1.0
    for k in (1, 3, 5):
        assert top_k_accuracy(scores, labels, k) == pytest.approx(
            skm.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(c))
        )
    pred = scores.argmax(1)
    assert macro_f1(pred, labels) == pytest.approx(skm.f1_score(labels, pred, average="macro"))
    np.testing.assert_array_equal(
        confusion_matrix(pred, labels, c), skm.confusion_matrix(labels, pred, labels=np.arange(c))
    )
    rep = identification_report(scores, labels)
    assert rep["top1"] == pytest.approx(np.mean(pred == labels))
    assert rep["top5"] == pytest.approx(top_k_accuracy(scores, labels, 5))
    assert rep["macro_f1"] == pytest.approx(macro_f1(pred, labels))


def test_identification_hand_computed() -> None:
    # Classes 0,1,2; truth [0,0,1,2], pred [0,1,1,1].
    # Class 0: TP1 FP0 FN1 -> F1 2/3; class 1: TP1 FP2 FN0 -> 2/4; class 2: TP0 -> 0.
    assert macro_f1([0, 1, 1, 1], [0, 0, 1, 2]) == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    # Class 3 is in neither array: it is left out of the average.
    assert macro_f1([0, 1, 1, 1], [0, 0, 1, 2], num_classes=4) == pytest.approx((2 / 3 + 0.5) / 3)
    m = confusion_matrix([0, 1, 1, 1], [0, 0, 1, 2], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    # Tie between the true class and another counts as a top-1 hit.
    assert top_k_accuracy([[0.5, 0.5, 0.1]], [1], 1) == 1.0
    assert identification_report([[0.1, 0.9], [0.8, 0.2]], [1, 1])["top5"] == 1.0


def test_identification_bad_inputs() -> None:
    with pytest.raises(ValueError, match="k must be"):
        top_k_accuracy(np.zeros((2, 3)), [0, 1], k=4)
    with pytest.raises(ValueError, match="num_classes is 3"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="rows"):
        top_k_accuracy(np.zeros((2, 3)), [0, 1, 2], k=1)
    with pytest.raises(ValueError, match="NaN"):
        top_k_accuracy(np.array([[np.nan, 0.0]]), [0], k=1)
    with pytest.raises(ValueError, match="integer"):
        macro_f1([0.5, 1.0], [0, 1])


# ---------------------------------------------------------------- plots


def test_det_points_and_plots(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from wildvox.metrics.plots import det_points, plot_det, probit

    assert probit(0.5) == pytest.approx(0.0)
    assert probit([0.0, 1.0]).tolist() == pytest.approx([-4.2649, 4.2649], abs=1e-3)
    rng = np.random.default_rng(9)
    s, y = random_trials(rng, 20000, tied=False)
    x, yy = det_points(s, y, max_points=500)
    assert x.size <= 500 and np.all(np.diff(x) <= 0) and np.all(np.diff(yy) >= 0)
    # The curve crosses the diagonal at the EER.
    eer, _ = compute_eer(s, y)
    cross = np.argmin(np.abs(x - yy))
    assert x[cross] == pytest.approx(probit(eer), abs=0.05)

    pytest.importorskip("matplotlib")
    png = plot_det({"a": (s, y), "b": (s + rng.normal(size=s.size), y)}, tmp_path / "det.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one"):
        plot_det({}, tmp_path / "y.png")
