import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from recsys.data.interactions import BIG_FIVE
from recsys.data.native import read_native, read_native_table
from recsys.data.world import PreferenceWorld, WorldConfig, generate_world, world_config_from_native
from recsys.data.world.catalog import aspect_column
from recsys.data.world.population import standardized_traits
from recsys.errors import UserInputError


@pytest.fixture(scope="module")
def world() -> PreferenceWorld:
    return generate_world(WorldConfig.toy(seed=7, false_positive_rate=0.25))


def _brute_force_utility(world: PreferenceWorld) -> np.ndarray:
    """The utility formula written out term by term from the hidden parts, independently of UtilityModel."""
    cfg, items, tastes = world.config, world.items, world.tastes
    d, a = cfg.latent_dim, cfg.n_aspects
    latent = tastes[:, :d] @ items.latent.T / np.sqrt(d)
    aspects = tastes[:, d:d + a] @ items.aspect_values.T.astype(float) / np.sqrt(cfg.aspects_per_item)
    category = tastes[:, d + a:][:, items.category]
    tie_break = 1e-7 * np.arange(world.n_items) / world.n_items  # documented in recsys.data.world.utility
    return (cfg.latent_weight * latent + cfg.aspect_weight * aspects + cfg.category_weight * category
            + cfg.quality_weight * items.quality[None, :] + tie_break[None, :])


# determinism ------------------------------------------------------------------------------------
def _fingerprint(w: PreferenceWorld) -> list:
    o = w.observed
    return [o.user, o.item, o.timestamp, o.rating, w.is_false_positive, w.observed_utility, w.missed.item,
            o.profiles.traits, w.tastes, o.catalog.frame, o.profiles.demographics, w.clicks, w.reviews,
            w.review_sentences, w.preferences]


def test_same_seed_same_world_and_different_seed_differs():
    a, b = generate_world(WorldConfig.toy(seed=3)), generate_world(WorldConfig.toy(seed=3))
    for left, right in zip(_fingerprint(a), _fingerprint(b)):
        if isinstance(left, pd.DataFrame):
            pd.testing.assert_frame_equal(left, right)
        else:
            np.testing.assert_array_equal(left, right)
    c = generate_world(WorldConfig.toy(seed=4))
    assert not np.array_equal(a.tastes, c.tastes)
    assert not np.array_equal(a.observed.item[:50], c.observed.item[:50])
    assert list(a.observed.catalog.titles) != list(c.observed.catalog.titles)


# utilities and likes -------------------------------------------------------------------------------
def test_true_utility_matches_the_formula_and_pairs_match_the_matrix(world):
    expected = _brute_force_utility(world)
    users = np.arange(world.n_users)
    np.testing.assert_allclose(world.true_utility(users), expected, rtol=1e-10, atol=1e-10)
    rng = np.random.default_rng(0)
    u, i = rng.integers(world.n_users, size=500), rng.integers(world.n_items, size=500)
    np.testing.assert_allclose(world.true_utility(u, i), expected[u, i], rtol=1e-10, atol=1e-10)
    with pytest.raises(UserInputError):
        world.true_utility(u, i[:10])
    with pytest.raises(UserInputError):
        world.true_utility([world.n_users])


def test_every_user_likes_exactly_their_top_like_share(world):
    utility = _brute_force_utility(world)
    k = world.config.liked_per_user
    liked = world.liked_items().toarray()
    assert liked.shape == (world.n_users, world.n_items)
    assert (liked.sum(axis=1) == k).all()
    top_k = np.argsort(-utility, axis=1)[:, :k]
    brute = np.zeros_like(liked)
    np.put_along_axis(brute, top_k, True, axis=1)
    np.testing.assert_array_equal(liked, brute)
    np.testing.assert_array_equal(world.liked_items([5, 2]).toarray(), brute[[5, 2]])


# noise with known truth ----------------------------------------------------------------------------
def test_false_positive_flags_are_exact_and_the_rate_is_realized(world):
    liked = world.truly_liked(world.observed.user, world.observed.item)
    np.testing.assert_array_equal(world.is_false_positive, ~liked)
    assert world.is_false_positive.mean() == pytest.approx(0.25, abs=0.02)
    clean = generate_world(WorldConfig.toy(seed=7, false_positive_rate=0.0))
    assert not clean.is_false_positive.any()
    assert clean.truly_liked(clean.observed.user, clean.observed.item).all()


def test_worlds_with_discrete_utilities_still_like_exactly_like_share():
    # No latent and no quality term: utilities take few distinct values and would tie.
    w = generate_world(WorldConfig.toy(latent_weight=0.0, quality_weight=0.0))
    assert (w.liked_items().sum(axis=1) == w.config.liked_per_user).all()
    np.testing.assert_array_equal(w.is_false_positive, ~w.truly_liked(w.observed.user, w.observed.item))


def test_false_positives_are_disliked_and_rated_lower(world):
    r = world.observed.rating
    assert set(np.unique(r)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert r[world.is_false_positive].mean() < 2.5 < 4.0 < r[~world.is_false_positive].mean()
    thresholds = world.like_threshold[world.observed.user]
    assert (world.observed_utility[world.is_false_positive] < thresholds[world.is_false_positive]).all()


def test_missing_positives_are_liked_exposed_and_never_observed(world):
    missed = world.missed
    assert world.truly_liked(missed.user, missed.item).all()
    observed_pairs = set(zip(world.observed.user.tolist(), world.observed.item.tolist()))
    assert not observed_pairs & set(zip(missed.user.tolist(), missed.item.tolist()))
    true_positives = int((~world.is_false_positive).sum())
    assert len(missed) / (len(missed) + true_positives) == pytest.approx(0.2, abs=0.02)


def test_clean_removes_exactly_the_flagged_rows(world):
    clean = world.clean(world.observed)
    keep = ~world.is_false_positive
    for name in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(clean, name), getattr(world.observed, name)[keep])
    # any split of the world: a random half
    half = world.observed.subset(np.random.default_rng(1).random(len(world.observed)) < 0.5)
    rows = world.clean(half)
    flagged = world.is_false_positive[np.random.default_rng(1).random(len(world.observed)) < 0.5]
    assert len(rows) == int((~flagged).sum())
    other = generate_world(WorldConfig.toy(n_users=20, n_items=40, n_categories=3, interactions_per_user=4.0,
                                             min_interactions=2))
    with pytest.raises(UserInputError, match="not a split of this world"):
        world.clean(other.observed)


def test_clicks_log_every_impression(world):
    clicks = world.clicks
    assert not clicks.duplicated(["user", "item"]).any()
    clicked = clicks[clicks["click"] == 1]
    assert len(clicked) == len(world.observed)
    assert set(zip(clicked.user, clicked.item)) == set(zip(world.observed.user, world.observed.item))
    unclicked = clicks[clicks["click"] == 0]
    liked = world.truly_liked(unclicked.user.to_numpy(), unclicked.item.to_numpy())
    assert int(liked.sum()) == len(world.missed)  # the only liked impressions without a click


# exposure, activity and time ---------------------------------------------------------------------
def test_activity_is_heavy_tailed_and_hits_the_target_mean():
    cfg = WorldConfig.toy(n_users=600, n_items=1500, interactions_per_user=30.0, min_interactions=4)
    counts = generate_world(cfg).observed.user_counts()
    assert counts.mean() == pytest.approx(30.0, abs=0.01)
    assert counts.min() >= 4
    assert counts.max() > 4 * np.median(counts)


def test_popularity_bias_concentrates_exposure_on_popular_items():
    def correlation(bias: float) -> float:
        w = generate_world(WorldConfig.toy(popularity_bias=bias))
        impressions = np.bincount(w.clicks["item"], minlength=w.n_items)
        return np.corrcoef(w.items.log_popularity, np.log1p(impressions))[0, 1]

    flat, biased = correlation(0.0), correlation(1.0)
    assert biased > 0.8 and biased > flat + 0.3


def test_timestamps_are_time_ordered_per_user_inside_the_span(world):
    o, cfg = world.observed, world.config
    assert (np.diff(o.user) >= 0).all()
    same_user = np.diff(o.user) == 0
    assert (np.diff(o.timestamp)[same_user] >= 0).all()
    assert o.timestamp.min() >= cfg.time_start
    assert o.timestamp.max() <= cfg.time_start + cfg.time_span_days * 86_400
    sequences = world.sequences()
    assert len(sequences) == world.n_users
    np.testing.assert_array_equal(np.concatenate(sequences), o.item)
    clean = world.sequences(clean=True)
    np.testing.assert_array_equal(np.concatenate(clean), o.item[~world.is_false_positive])


def test_sessions_make_consecutive_items_share_categories_beyond_chance():
    def same_category_share(coherence: float) -> tuple[float, float]:
        w = generate_world(WorldConfig.toy(session_coherence=coherence))
        cat = w.items.category[w.observed.item]
        same_user = w.observed.user[1:] == w.observed.user[:-1]
        chance = ((np.bincount(cat) / len(cat)) ** 2).sum()
        return (cat[1:] == cat[:-1])[same_user].mean(), chance

    coherent, chance = same_category_share(0.9)
    random_order, _ = same_category_share(0.0)
    assert coherent > 2 * chance and abs(random_order - chance) < 0.05


# traits, text and statements ------------------------------------------------------------------------
def test_traits_predict_tastes_on_held_out_users_as_configured():
    def held_out_r2(influence: float) -> float:
        w = generate_world(WorldConfig.toy(n_users=2000, n_items=60, interactions_per_user=5.0, min_interactions=2,
                                           trait_influence=influence))
        x, y = standardized_traits(w.observed.profiles.traits), w.tastes
        model = LinearRegression().fit(x[:1000], y[:1000])
        return r2_score(y[1000:], model.predict(x[1000:]))

    assert held_out_r2(0.4) == pytest.approx(0.4, abs=0.08)
    assert held_out_r2(0.0) < 0.02


def test_profiles_hold_big_five_on_the_tipi_scale_and_demographics(world):
    profiles = world.observed.profiles
    assert profiles.traits.shape == (world.n_users, len(BIG_FIVE))
    assert profiles.traits.min() >= 1 and profiles.traits.max() <= 7
    np.testing.assert_array_equal(profiles.traits * 2, np.round(profiles.traits * 2))
    assert list(profiles.demographics.columns) == ["age_group", "gender", "country"]
    assert profiles.demographics.notna().all().all()


def test_item_text_names_every_salient_aspect_pole(world):
    frame = world.observed.catalog.frame
    for i in range(world.n_items):
        for a in world.items.salient[i]:
            aspect = world.items.aspects[a]
            value = int(world.items.aspect_values[i, a])
            assert value in (-1, 1)
            assert frame[aspect_column(aspect.key)][i] == value
            assert aspect.pole(value) in frame["text"][i].lower()
    assert frame["title"].nunique() > 0.8 * world.n_items
    assert (world.items.aspect_values != 0).sum(axis=1).tolist() == [world.config.aspects_per_item] * world.n_items


def test_stated_preferences_agree_with_true_utilities(world):
    utility = world.true_utility(np.arange(world.n_users))
    keys = [a.key for a in world.items.aspects]
    margins = []
    for row in world.preferences[world.preferences["kind"] == "aspect"].itertuples():
        column = world.items.aspect_values[:, keys.index(row.aspect)]
        named, opposite = column == row.value, column == -row.value
        if named.any() and opposite.any():
            sign = 1 if row.polarity == "like" else -1
            margins.append(sign * (utility[row.user, named].mean() - utility[row.user, opposite].mean()))
        assert world.items.aspects[keys.index(row.aspect)].pole(row.value) in row.sentence
    assert len(margins) > 0.9 * world.n_users * world.config.stated_aspect_preferences
    assert (np.array(margins) > 0).all()  # statements are chosen from the true contrasts
    names = [c.name for c in world.items.categories]
    categories = world.preferences[world.preferences["kind"] == "category"]
    assert len(categories) == 2 * world.n_users
    for row in categories.itertuples():
        in_category = world.items.category == names.index(row.category)
        gap = utility[row.user, in_category].mean() - utility[row.user, ~in_category].mean()
        assert gap * (1 if row.polarity == "like" else -1) > 0


def test_review_sentences_carry_the_true_aspect_sentiment():
    w = generate_world(WorldConfig.toy(review_noise=0.0, review_rate=0.5))
    keys = [a.key for a in w.items.aspects]
    sentences = w.review_sentences[w.review_sentences["aspect"] != "overall"]
    k = np.array([keys.index(a) for a in sentences["aspect"]])
    tastes = w.tastes[:, w.config.latent_dim:w.config.latent_dim + w.config.n_aspects]
    expected = np.sign(tastes[sentences["user"].to_numpy(), k] * sentences["value"].to_numpy())
    np.testing.assert_array_equal(sentences["sentiment"].to_numpy(), expected)
    np.testing.assert_array_equal(w.items.aspect_values[sentences["item"].to_numpy(), k], sentences["value"])
    assert len(w.reviews) == pytest.approx(0.5 * len(w.observed), rel=0.1)
    joined = w.review_sentences.groupby("review")["sentence"].agg(" ".join)
    assert joined.tolist() == w.reviews["text"].tolist()
    noisy = generate_world(WorldConfig.toy(review_noise=0.3, review_rate=0.5)).review_sentences
    noisy = noisy[noisy["aspect"] != "overall"]
    k = np.array([keys.index(a) for a in noisy["aspect"]])
    agree = np.sign(tastes[noisy["user"].to_numpy(), k] * noisy["value"].to_numpy()) == noisy["sentiment"]
    assert agree.mean() == pytest.approx(0.7, abs=0.05)


# config -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    ({"false_positive_rate": 1.0}, "false_positive_rate must be < 1"),
    ({"n_users": 0}, "n_users must be >= 1"),
    ({"n_categories": 99}, "n_categories must be <= 24"),
    ({"trait_influence": 0.8, "demographic_influence": 0.3}, "at most 1"),
    ({"interactions_per_user": 200.0}, "interactions_per_user"),
    ({"like_share": 0.001}, "like_share"),
    ({"n_users": 2.5}, "n_users must be an integer"),
    ({"aspects_per_item": 9}, "aspects_per_item"),
])
def test_bad_configs_say_which_field(overrides, message):
    with pytest.raises(UserInputError, match=message):
        WorldConfig.toy(**overrides)


def test_presets_and_round_trip_of_the_config():
    ml = WorldConfig.movielens_1m_shape()
    assert (ml.n_users, ml.n_items) == (6040, 3706)
    assert ml.interactions_per_user * ml.n_users == pytest.approx(1_000_209)
    assert WorldConfig.preset("movielens-1m") == ml
    assert WorldConfig.from_dict(ml.to_dict()) == ml
    with pytest.raises(UserInputError, match="unknown field"):
        WorldConfig.from_dict({**ml.to_dict(), "n_userz": 3})
    with pytest.raises(UserInputError, match="unknown world preset"):
        WorldConfig.preset("huge")
    assert dataclasses.replace(ml, seed=5).seed == 5


# files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_native_files_read_back_unchanged(tmp_path, world, file_format):
    world.to_native(tmp_path, file_format=file_format)
    data = read_native(tmp_path)
    for name in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(data, name), getattr(world.observed, name))
    assert data.label is None
    assert list(data.vocab.items) == list(world.observed.vocab.items)
    pd.testing.assert_frame_equal(data.catalog.frame, world.observed.catalog.frame)
    np.testing.assert_array_equal(data.profiles.traits, world.observed.profiles.traits)
    pd.testing.assert_frame_equal(data.profiles.demographics, world.observed.profiles.demographics)
    for name, frame in world.native_tables().items():
        pd.testing.assert_frame_equal(read_native_table(tmp_path, name), frame, check_dtype=False)
    truth = read_native_table(tmp_path, "truth")
    np.testing.assert_array_equal(truth["is_false_positive"].to_numpy(dtype=bool), world.is_false_positive)
    assert world_config_from_native(tmp_path) == world.config
