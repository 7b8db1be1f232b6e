import numpy as np
import pytest

from bench.analysis.fit import Estimate, crossover, fit_power_law, fit_problem, loglog_exponent, offset_exponent


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_exponent_recovered_from_noisy_synthetic_times(k):
    rng = np.random.default_rng(1)
    T = np.repeat(2 ** np.arange(7, 14), 3)
    y = (1e-5 + 1e-7 * T ** k) * np.exp(rng.normal(0, 0.03, len(T)))  # small overhead + T^k, 3% noise
    est = loglog_exponent(T, y, top=4)
    assert est.value == pytest.approx(k, abs=0.05)
    assert est.lo <= est.value <= est.hi and est.hi - est.lo < 0.2


def test_exponent_needs_two_lengths():
    with pytest.raises(ValueError, match="two distinct"):
        loglog_exponent([64, 64], [1.0, 1.1])


def test_crossover_interpolates_in_log_space():
    T = np.array([128, 256, 512, 1024])
    ref = T.astype(float) ** 2
    var = 256.0 * T  # equal at T = 256
    assert crossover(T, var, ref) == pytest.approx(256, rel=1e-6)
    assert crossover(T, ref * 2, ref) is None
    assert crossover(T, ref / 2, ref) == 128


def test_power_law_recovered():
    rng = np.random.default_rng(0)
    D = np.repeat(2.0 ** np.arange(7, 17), 3)
    err = 3.0 * D ** -0.3 + 0.05 + rng.normal(0, 0.002, len(D))
    fit = fit_power_law(D, err, n_boot=100)
    assert fit.alpha.value == pytest.approx(0.3, abs=0.05)
    assert fit.c.value == pytest.approx(0.05, abs=0.02)
    assert fit.alpha.lo <= 0.3 <= fit.alpha.hi
    assert fit.data_for(0.2) == pytest.approx((0.15 / 3.0) ** (-1 / 0.3), rel=0.3)
    assert fit.data_for(0.01) is None


def test_a_ci_over_seeds_is_zero_wide_when_the_seeds_agree():
    D = np.repeat([64.0, 256.0, 1024.0, 4096.0, 16384.0], 3)  # three seeds per size, all equal
    err = np.repeat([0.5, 0.3, 0.25, 0.12, 0.1], 3)  # no exact power law: which sizes a resample keeps matters
    over_seeds = fit_power_law(D, err, n_boot=50, within_sizes=True)
    assert over_seeds.alpha.lo == over_seeds.alpha.value == over_seeds.alpha.hi
    pairs = fit_power_law(D, err, n_boot=50)
    assert pairs.alpha.hi - pairs.alpha.lo > 0.01  # pairs resampling drops sizes and moves α
    assert pairs.alpha.value == over_seeds.alpha.value


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_offset_exponent_recovers_k_under_a_fixed_offset(k):
    """a + b·T^k with an offset that is 20% of the top value: the log-log slope is bent, the offset fit is not."""
    rng = np.random.default_rng(2)
    T = 2.0 ** np.arange(7, 16)
    clean = 1e-7 * T ** k
    y = (0.2 * clean[-1] + clean) * np.exp(rng.normal(0, 0.01, len(T)))
    est = offset_exponent(T, y, top=5)
    assert est.value == pytest.approx(k, abs=0.05)
    assert est.lo <= est.value <= est.hi and est.n == 5
    assert loglog_exponent(T, y, top=4).value < k - 0.1  # the slope alone would miss it


def test_offset_exponent_of_a_pure_power_and_its_limits():
    T = 2.0 ** np.arange(7, 12)
    assert offset_exponent(T, 3.0 * T ** 1.5).value == pytest.approx(1.5, abs=0.01)
    with pytest.raises(ValueError, match="three distinct"):
        offset_exponent([64, 128, 128], [1.0, 2.0, 2.1])


@pytest.mark.parametrize("estimate, text", [
    (Estimate(1.02, 0.98, 1.05, 4), "1.02 [0.98, 1.05]"),
    (Estimate(1.89, 1.89, 1.89, 2), "n/a (2 points)"),  # a 2-point line: exact, no interval
    (Estimate(-1.10, -2.62, 0.41, 4), "n/a (CI wider than the estimate)"),  # sign unknown
    (Estimate(0.0, -0.1, 0.1, 5), "n/a (CI wider than the estimate)"),
    (Estimate(float("nan"), float("nan"), float("nan"), 4), "n/a (no fit)"),
])
def test_estimate_says_when_it_is_not_a_fit(estimate, text):
    assert str(estimate) == text
    assert estimate.usable == (not text.startswith("n/a"))
    assert fit_problem(estimate.value, estimate.lo, estimate.hi, estimate.n) == estimate.problem


def test_a_two_point_exponent_is_not_usable_but_four_clean_points_are():
    T = np.array([256, 512, 1024, 2048], dtype=float)
    assert not loglog_exponent(T[:2], T[:2] ** 2).usable
    assert loglog_exponent(T, 1e-9 * T ** 2 * (1 + 0.01 * np.array([1, -1, 1, -1]))).usable
