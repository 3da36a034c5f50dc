import numpy as np
import pandas as pd
import pytest

from recsys.data.filters import apply, binarize, compact, deduplicate, kcore
from recsys.data.interactions import Catalog, IdVocab, InteractionData, UserProfiles
from recsys.errors import UserInputError


def _data(user, item, timestamp=None, rating=None, label=None, n_users=None, n_items=None, **side):
    n_users = n_users or max(user) + 1
    n_items = n_items or max(item) + 1
    timestamp = np.arange(len(user)) if timestamp is None else timestamp
    return InteractionData(user, item, timestamp, IdVocab.range(n_users, n_items), rating=rating, label=label, **side)


def test_binarize_drop_and_negative():
    data = _data([0, 0, 1, 1], [0, 1, 0, 1], rating=[5, 3, 4, 1])
    dropped, report = binarize(data, 4)
    np.testing.assert_array_equal(dropped.item, [0, 0])
    np.testing.assert_array_equal(dropped.user, [0, 1])
    assert dropped.label is None and (report.rows, report.users, report.items, report.rows_left) == (2, 0, 1, 2)
    labelled, report = binarize(data, 4, below="negative")
    np.testing.assert_array_equal(labelled.label, [1, 0, 1, 0])
    assert len(labelled) == 4 and report.rows == 0
    # existing labels: a row is positive only if it was and clears the threshold
    both, _ = binarize(_data([0, 0], [0, 1], rating=[5, 5], label=[0, 1]), 4, below="negative")
    np.testing.assert_array_equal(both.label, [0, 1])
    with pytest.raises(UserInputError, match="ratings"):
        binarize(_data([0], [0]), 4)
    with pytest.raises(UserInputError, match="below"):
        binarize(data, 4, below="zero")


def test_deduplicate_policies_hand_computed():
    # pair (0,0): rows 0 (t=5, r=2), 2 (t=1, r=4), 4 (t=5, r=4); pair (1,1): rows 1, 3 (t=3 both, r=1 and 5)
    data = _data([0, 1, 0, 1, 0], [0, 1, 0, 1, 0], timestamp=[5, 3, 1, 3, 5], rating=[2, 1, 4, 5, 4])
    expected = {"first": [1, 2], "last": [3, 4], "max_rating": [3, 4], "keep": [0, 1, 2, 3, 4]}
    for policy, rows in expected.items():
        kept, report = deduplicate(data, policy)
        np.testing.assert_array_equal(kept.timestamp, data.timestamp[rows], err_msg=policy)
        np.testing.assert_array_equal(kept.rating, data.rating[rows], err_msg=policy)
        assert report.rows == 5 - len(rows) and report.users == 0
    with pytest.raises(UserInputError, match="max_rating"):
        deduplicate(_data([0], [0]), "max_rating")
    with pytest.raises(UserInputError, match="policy"):
        deduplicate(data, "mean")


def _brute_force_kcore(pairs, user_k, item_k):
    pairs = set(pairs)
    while True:
        users = pd.Series([u for u, _ in pairs]).value_counts()
        items = pd.Series([i for _, i in pairs]).value_counts()
        bad = {(u, i) for u, i in pairs if users[u] < user_k or items[i] < item_k}
        if not bad:
            return pairs
        pairs -= bad


def test_kcore_cascade_hand_computed():
    # Removing item 3 (1 row) leaves user 2 with 1 row, whose removal leaves item 2 with 1 row, ...
    data = _data([0, 0, 1, 1, 2, 2, 0, 1], [0, 1, 0, 1, 2, 3, 2, 4])
    core, report = kcore(data, 2, 2)
    assert sorted(zip(core.user.tolist(), core.item.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (report.rows, report.users, report.items) == (4, 1, 3)


def test_kcore_is_the_fixed_point_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(5):
        pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 40, 300), rng.integers(0, 30, 300))}
        user, item = map(np.array, zip(*sorted(pairs)))
        data = _data(user, item, n_users=40, n_items=30)
        core, _ = kcore(data, 5, 4 + trial % 2)
        got = set(zip(core.user.tolist(), core.item.tolist()))
        assert got == _brute_force_kcore(pairs, 5, 4 + trial % 2)
        assert (core.user_counts()[core.user_counts() > 0] >= 5).all()
        again, report = kcore(core, 5, 4 + trial % 2)
        assert report.rows == 0 and len(again) == len(core)


def test_kcore_counts_positives_but_removes_negatives_too():
    data = _data([0, 0, 1, 1], [0, 1, 0, 1], label=[1, 1, 1, 0])
    core, report = kcore(data, 2, 1)
    np.testing.assert_array_equal(core.user, [0, 0])
    assert report.rows == 2


def test_compact_reindexes_vocab_catalog_profiles():
    catalog = Catalog(pd.DataFrame({"title": ["a", "b", "c", "d"], "price": [1, 2, 3, 4]}))
    traits = np.arange(15, dtype=np.float32).reshape(3, 5)
    profiles = UserProfiles(traits, pd.DataFrame({"age": [10, 20, 30]}))
    data = InteractionData([2, 0, 2], [3, 1, 1], [0, 1, 2], IdVocab(["u0", "u1", "u2"], ["i0", "i1", "i2", "i3"]),
                           catalog=catalog, profiles=profiles)
    small, report = compact(data)
    assert list(small.vocab.users) == ["u0", "u2"] and list(small.vocab.items) == ["i1", "i3"]
    np.testing.assert_array_equal(small.user, [1, 0, 1])
    np.testing.assert_array_equal(small.item, [1, 0, 0])
    assert list(small.catalog.titles) == ["b", "d"] and list(small.catalog.frame["price"]) == [2, 4]
    np.testing.assert_array_equal(small.profiles.traits, traits[[0, 2]])
    assert list(small.profiles.demographics["age"]) == [10, 30]
    assert (report.users, report.items, report.rows) == (1, 2, 0)
    # outside ids of every row are unchanged
    pd.testing.assert_frame_equal(small.to_frame(), data.to_frame())


def test_apply_runs_threshold_dedup_kcore_in_order():
    # ratings: the 2-star row of (1, 1) is dropped by the threshold before dedup, so dedup("last")
    # keeps its 5-star row; then 2-core removes user 2 and item 2.
    data = _data([0, 0, 1, 1, 1, 2], [0, 1, 0, 1, 1, 2], timestamp=[0, 1, 2, 3, 4, 5], rating=[4, 5, 4, 5, 2, 5])
    reports = []
    out = apply(data, rating_threshold=4, dedup="last", kcore=2, reports=reports)
    assert sorted(zip(out.user.tolist(), out.item.tolist(), out.timestamp.tolist())) == [
        (0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
    assert [r.rows for r in reports] == [1, 0, 1]
    assert apply(data) is data
