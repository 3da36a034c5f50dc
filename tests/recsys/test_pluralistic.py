"""Pluralistic preferences for recommendation: the typed world, the mixture model, its placement, the ARI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from recsys.data.world import WorldConfig, generate_world
from recsys.errors import UserInputError
from recsys.evaluation.clustering import adjusted_rand_index, contingency
from recsys.models.pluralistic import PluralisticRecommender

# The default toy world (seed 3) hashed before taste types existed: adding them must not move a number.
DEFAULT_WORLD_SHA256 = "9c547600c212c9091de7f4bc16e451b92c475829df94d3ce12caaf7305cac6b8"


def world_digest(world) -> str:
    h = hashlib.sha256()
    for array in (world.population.tastes, world.utility.user_vectors, world.utility.item_vectors,
                  world.observed.user, world.observed.item, world.observed.timestamp, world.observed.rating,
                  world.is_false_positive):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def typed_world():
    return generate_world(WorldConfig.toy(n_users=300, n_items=150, taste_types=3, type_concentration=0.1,
                                          type_influence=0.9, seed=1))


def test_the_default_world_is_unchanged_by_the_taste_type_option():
    world = generate_world(WorldConfig.toy(seed=3))
    assert world.type_mixture is None and world.population.dominant_type is None
    assert world_digest(world) == DEFAULT_WORLD_SHA256


def test_a_typed_world_keeps_each_users_true_mixture(typed_world):
    mixture = typed_world.type_mixture
    assert mixture.shape == (300, 3)
    np.testing.assert_allclose(mixture.sum(axis=1), 1.0)
    # A small concentration makes most users one type; every type is used.
    assert np.median(mixture.max(axis=1)) > 0.8
    assert set(typed_world.population.dominant_type) == {0, 1, 2}
    # Users of one type agree on items more than users of different types do.
    utility = typed_world.true_utility(np.arange(300))
    utility = (utility - utility.mean(1, keepdims=True)) / utility.std(1, keepdims=True)
    corr = utility @ utility.T / utility.shape[1]
    same = typed_world.population.dominant_type[:, None] == typed_world.population.dominant_type[None, :]
    assert corr[same].mean() > corr[~same].mean() + 0.3


def test_type_utilities_are_what_a_user_wholly_of_one_type_would_have():
    world = generate_world(WorldConfig.toy(n_users=200, n_items=150, taste_types=3, type_influence=1.0,
                                           type_concentration=0.01, seed=1))
    mixture = world.type_mixture
    pure = mixture.max(axis=1) > 0.999  # with no individual taste, these users are their type
    assert pure.sum() > 100
    utilities = world.type_utilities()
    assert utilities.shape == (3, 150)
    np.testing.assert_allclose(world.true_utility(np.flatnonzero(pure)), utilities[mixture[pure].argmax(1)], atol=0.01)
    assert generate_world(WorldConfig.toy(n_users=50, n_items=150, seed=1)).type_utilities() is None


def test_the_type_oracle_names_the_type_that_gave_the_answers(typed_world):
    from recsys.experiments.compare_pluralistic import answers, type_oracle

    users = np.arange(typed_world.n_users)
    truth = typed_world.population.dominant_type
    for per_user, low, high in ((2, -0.1, 0.5), (60, 0.8, 1.0)):
        _, preferred, over = answers(typed_world, users, per_user, 0.5, np.random.default_rng(0))
        ari = adjusted_rand_index(type_oracle(typed_world, preferred, over, 0.5), truth)
        assert low <= ari <= high, (per_user, ari)  # a couple of answers say little; sixty say a lot


@pytest.mark.parametrize("field, value", [("taste_types", -1), ("type_concentration", 0.0),
                                          ("type_influence", 1.5)])
def test_bad_taste_type_options_are_refused_by_name(field, value):
    with pytest.raises(UserInputError, match=field):
        WorldConfig.toy(**{field: value})


def test_ari_matches_hand_computed_contingency_cases():
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0  # same partition, other labels
    # a = {0,1,2},{3,4,5}; b = {0,1},{2,3},{4,5}: index 2, expected 6*3/15 = 1.2, max 4.5 -> 0.8/3.3.
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    np.testing.assert_array_equal(contingency(["x", "x", "y"], [1, 2, 2]), [[1, 1], [0, 1]])
    with pytest.raises(UserInputError, match="length"):
        adjusted_rand_index([0, 1], [0, 1, 2])


def test_ari_agrees_with_scikit_learn_on_random_labelings():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        a, b = rng.integers(0, 4, n), rng.integers(0, 5, n)
        assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)


def implicit_pairs(world, seed=0, repeat=4):
    rng = np.random.default_rng(seed)
    users, items = np.repeat(world.observed.user, repeat), np.repeat(world.observed.item, repeat)
    return users, items, rng.integers(0, world.n_items, len(users))


@pytest.fixture(scope="module")
def trained(typed_world):
    torch.manual_seed(0)
    model = PluralisticRecommender(300, 150, prototypes=3, embedding_dim=8, lr=0.03, logit_l2=0.0)
    losses = model.fit_pairs(*implicit_pairs(typed_world), epochs=15, batch_size=256)
    return model, losses


def test_the_mixture_model_learns_and_recovers_the_types(trained, typed_world):
    model, losses = trained
    assert losses[-1] < losses[0] - 0.1
    weights = model.mixture_weights().detach().numpy()
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    ari = adjusted_rand_index(weights.argmax(1), typed_world.population.dominant_type)
    assert ari > 0.3, ari  # chance is 0


def test_placement_from_comparisons_moves_a_new_user_toward_their_type(trained, typed_world):
    model, _ = trained
    rng = np.random.default_rng(5)
    users = np.arange(40)
    i, j = rng.integers(0, 150, (40, 20)), rng.integers(0, 150, (40, 20))
    utility = typed_world.true_utility(users)
    first = np.take_along_axis(utility, i, 1) > np.take_along_axis(utility, j, 1)
    preferred, over = np.where(first, i, j), np.where(first, j, i)
    logits = model.place_users(preferred, over, prior=1.0)
    scores = model.score_placed(logits).numpy()
    ti, tj = rng.integers(0, 150, (40, 200)), rng.integers(0, 150, (40, 200))
    truth = np.take_along_axis(utility, ti, 1) > np.take_along_axis(utility, tj, 1)
    placed = (np.take_along_axis(scores, ti, 1) > np.take_along_axis(scores, tj, 1)) == truth
    at_prior = model.score_placed(model.prior_logits().double().expand(40, -1)).numpy()
    prior = (np.take_along_axis(at_prior, ti, 1) > np.take_along_axis(at_prior, tj, 1)) == truth
    keep = ti != tj
    assert placed[keep].mean() > prior[keep].mean() + 0.05


def test_model_options_are_checked():
    with pytest.raises(UserInputError, match="users"):
        PluralisticRecommender(10, 10, users="both")
    with pytest.raises(UserInputError, match="prototypes"):
        PluralisticRecommender(10, 10, prototypes=0)
