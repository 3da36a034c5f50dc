"""Paired tests: t-test against scipy, bootstrap coverage on synthetic data, alignment over users and seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recsys.errors import UserInputError
from recsys.evaluation import EvaluationResult
from recsys.evaluation.significance import (
    bootstrap_ci,
    compare_over_seeds,
    compare_results,
    holm_bonferroni,
    paired_comparison,
    paired_t_test,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_t_test_equals_scipy_ttest_rel(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(200)
    b = a + rng.normal(0.02 * seed, 0.1, size=200)
    expected = stats.ttest_rel(a, b)
    t, p = paired_t_test(a, b)
    assert t == pytest.approx(expected.statistic, rel=1e-10)
    assert p == pytest.approx(expected.pvalue, rel=1e-8)


def test_paired_t_test_without_any_difference_is_no_evidence():
    a = np.array([0.1, 0.5, 0.3])
    assert paired_t_test(a, a) == (0.0, 1.0)
    with pytest.raises(UserInputError, match="same length"):
        paired_t_test(a, a[:2])


def test_bootstrap_ci_covers_the_true_mean_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    true_difference, trials = 0.3, 300
    covered = 0
    for trial in range(trials):
        difference = true_difference + rng.standard_normal(60)
        low, high = bootstrap_ci(difference, confidence=0.9, n_resamples=1000, seed=trial)
        covered += low <= true_difference <= high
    # Binomial sd at p = 0.9 over 300 trials is 0.017; the percentile bootstrap runs slightly under nominal.
    assert 0.84 <= covered / trials <= 0.96


def test_bootstrap_is_seeded_and_agrees_with_scipy():
    difference = np.random.default_rng(5).exponential(1.0, size=150) - 0.8
    assert bootstrap_ci(difference, seed=3) == bootstrap_ci(difference, seed=3)
    assert bootstrap_ci(difference, seed=3) != bootstrap_ci(difference, seed=4)
    ours = bootstrap_ci(difference, confidence=0.95, n_resamples=5000, seed=0)
    reference = stats.bootstrap((difference,), np.mean, confidence_level=0.95, n_resamples=5000,
                                method="percentile", random_state=1).confidence_interval
    assert ours == pytest.approx((reference.low, reference.high), abs=0.02)


def _result(users, values, split="test") -> EvaluationResult:
    key = f"{split}/ndcg@10"
    return EvaluationResult(metrics={key: float(np.mean(values))}, per_user={key: np.asarray(values, float)},
                            users={split: np.asarray(users)}, ks=(10,))


def test_compare_results_pairs_the_users_both_evaluated():
    a = _result([1, 2, 3, 5, 8], [0.5, 0.4, 0.9, 0.2, 0.7])
    b = _result([2, 3, 4, 5, 8], [0.3, 0.8, 0.1, 0.1, 0.6])
    comparison = compare_results(a, b, n_resamples=500)["test/ndcg@10"]
    # Users 2, 3, 5 and 8 are in both; 1 and 4 are left out.
    assert comparison.n == 4
    assert comparison.mean_a == pytest.approx(np.mean([0.4, 0.9, 0.2, 0.7]))
    assert comparison.mean_b == pytest.approx(np.mean([0.3, 0.8, 0.1, 0.6]))
    assert comparison.mean_difference == pytest.approx(0.1)


def test_compare_results_finds_a_real_improvement_and_not_a_null_one():
    rng = np.random.default_rng(1)
    users = np.arange(500)
    base = rng.random(500)
    better = _result(users, np.clip(base + rng.normal(0.05, 0.1, 500), 0, 1))
    same = _result(users, np.clip(base + rng.normal(0.0, 0.1, 500), 0, 1))
    reference = _result(users, base)
    gain = compare_results(better, reference, n_resamples=2000)["test/ndcg@10"]
    null = compare_results(same, reference, n_resamples=2000)["test/ndcg@10"]
    assert gain.p_value < 1e-6 and gain.ci_low > 0
    assert null.p_value > 0.01 and null.ci_low < 0 < null.ci_high


def test_compare_over_seeds_pairs_runs_by_position():
    a = [{"test/recall@10": v} for v in (0.31, 0.33, 0.30, 0.34)]
    b = [{"test/recall@10": v} for v in (0.29, 0.30, 0.29, 0.31)]
    comparison = compare_over_seeds(a, b, n_resamples=500)["test/recall@10"]
    expected = stats.ttest_rel([0.31, 0.33, 0.30, 0.34], [0.29, 0.30, 0.29, 0.31])
    assert comparison.n == 4
    assert comparison.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    with pytest.raises(UserInputError, match="pairs runs by seed"):
        compare_over_seeds(a, b[:3])


def test_paired_comparison_reports_means_and_interval():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 2.0, 2.0, 3.5])
    result = paired_comparison(a, b, n_resamples=1000)
    assert result.mean_difference == pytest.approx(0.5)
    assert result.ci_low <= 0.5 <= result.ci_high


def test_holm_bonferroni_on_a_hand_case():
    adjusted = holm_bonferroni({"a": 0.01, "b": 0.04, "c": 0.03})
    # Sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04).
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
