"""Negative sampling: never a training positive, the right distribution, deterministic by seed."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import chisquare

from recsys.data.sampling import NegativeSampler
from recsys.errors import UserInputError


def _positives(n_users=30, n_items=25, density=0.4, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_never_returns_a_training_positive(strategy):
    positives = _positives()
    sampler = NegativeSampler(positives, strategy)
    users = np.repeat(np.arange(positives.shape[0]), 50)
    negatives = sampler.sample(users, 4, np.random.default_rng(1))
    assert negatives.shape == (len(users), 4)
    dense = positives.toarray() > 0
    assert not dense[users[:, None], negatives].any()
    assert negatives.min() >= 0 and negatives.max() < positives.shape[1]


def test_a_user_holding_all_but_one_item_always_gets_that_item():
    dense = np.zeros((3, 40), dtype=np.float32)
    dense[0, :] = 1
    dense[0, 17] = 0  # rejection alone would take ~40 rounds per slot: the exact fallback must finish it
    dense[1, :5] = 1
    positives = sp.csr_matrix(dense)
    for strategy in ("uniform", "popularity"):
        sampler = NegativeSampler(positives, strategy, max_rounds=2)
        negatives = sampler.sample(np.zeros(200, dtype=np.int64), 3, np.random.default_rng(0))
        assert (negatives == 17).all()


def test_uniform_draws_are_uniform_over_the_complement():
    positives = _positives(n_users=1, n_items=12, density=0.5, seed=3)
    allowed = np.flatnonzero(positives.toarray()[0] == 0)
    sampler = NegativeSampler(positives, "uniform")
    draws = sampler.sample(np.zeros(30_000, dtype=np.int64), 1, np.random.default_rng(2)).ravel()
    counts = np.bincount(draws, minlength=12)[allowed]
    assert counts.sum() == 30_000
    assert chisquare(counts).pvalue > 1e-3


def test_popularity_draws_follow_smoothed_counts():
    # user 0 holds nothing; item popularity comes from users 1..3
    dense = np.zeros((4, 5), dtype=np.float32)
    dense[1:, 0] = 1
    dense[1, 1] = 1
    positives = sp.csr_matrix(dense)
    sampler = NegativeSampler(positives, "popularity", popularity_exponent=1.0)
    draws = sampler.sample(np.zeros(40_000, dtype=np.int64), 1, np.random.default_rng(5)).ravel()
    expected = np.array([4, 2, 1, 1, 1], dtype=float)  # (count + 1) ** 1
    observed = np.bincount(draws, minlength=5)
    assert chisquare(observed, expected / expected.sum() * len(draws)).pvalue > 1e-3


def test_same_seed_same_negatives_and_is_positive_matches_matrix():
    positives = _positives()
    sampler = NegativeSampler(positives)
    users = np.arange(30)
    first = sampler.sample(users, 3, np.random.default_rng(9))
    assert np.array_equal(first, sampler.sample(users, 3, np.random.default_rng(9)))
    u, i = np.meshgrid(np.arange(30), np.arange(25), indexing="ij")
    assert np.array_equal(sampler.is_positive(u, i), positives.toarray() > 0)


def test_bad_input_is_refused_with_a_clear_message():
    positives = _positives()
    with pytest.raises(UserInputError, match=">= 1"):
        NegativeSampler(positives).sample(np.arange(3), 0, np.random.default_rng(0))
    with pytest.raises(UserInputError, match="'uniform' or 'popularity'"):
        NegativeSampler(positives, "zipf")
    full = sp.csr_matrix(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(UserInputError, match="every one of the 4 items"):
        NegativeSampler(full)
