import numpy as np
import pytest

from recsys.data.interactions import IdVocab, InteractionData
from recsys.data.splits import count_overlap, leave_one_out, make_split, random_split, temporal_split
from recsys.errors import UserInputError


def _random_data(n=20_000, n_users=300, n_items=200, seed=0, time_range=10_000):
    rng = np.random.default_rng(seed)
    return InteractionData(rng.integers(0, n_users, n), rng.integers(0, n_items, n), rng.integers(0, time_range, n),
                           IdVocab.range(n_users, n_items), rating=rng.integers(1, 6, n))


def _rows(data):
    return sorted(zip(data.user.tolist(), data.item.tolist(), data.timestamp.tolist(), data.rating.tolist()))


def _check_partition(data, split):
    """Every row lands in exactly one part, and no (user, item) pair crosses parts."""
    assert _rows(data) == sorted(_rows(split.train) + _rows(split.valid) + _rows(split.test))
    assert count_overlap(split.train, split.valid) == 0
    assert count_overlap(split.train, split.test) == 0
    assert count_overlap(split.valid, split.test) == 0


def _pair_counts(part):
    keys = np.unique(part.user * 10_000 + part.item)
    return np.bincount(keys // 10_000, minlength=part.n_users)


def test_random_split_ratios_per_user_and_determinism():
    data = _random_data()  # has repeated (user, item) pairs
    split = random_split(data, (0.8, 0.1, 0.1), seed=7)
    _check_partition(data, split)
    total = _pair_counts(split.train) + _pair_counts(split.valid) + _pair_counts(split.test)
    expected = np.floor(total * 0.1 + 0.5)
    np.testing.assert_array_equal(_pair_counts(split.valid), expected)
    np.testing.assert_array_equal(_pair_counts(split.test), expected)
    again = random_split(data, (0.8, 0.1, 0.1), seed=7)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(split, name).item, getattr(again, name).item)
    other = random_split(data, (0.8, 0.1, 0.1), seed=8)
    assert not np.array_equal(split.test.item, other.test.item)


def test_random_split_small_users_keep_a_training_pair():
    data = InteractionData([0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2], [0] * 6, IdVocab.range(3, 3))
    split = random_split(data, (0.0, 0.5, 0.5), seed=0)
    np.testing.assert_array_equal(_pair_counts(split.train), [1, 1, 1])
    # user 1: 2 pairs -> round(1)=1 valid + 1 test, but one must stay in train: valid gives way;
    # user 2: 3 pairs -> round(1.5)=2 valid + 2 test, trimmed to 2 held out: valid gives way again
    np.testing.assert_array_equal(_pair_counts(split.valid), [0, 0, 0])
    np.testing.assert_array_equal(_pair_counts(split.test), [0, 1, 2])


def test_leave_one_out_picks_the_latest_with_deterministic_ties():
    # user 0: items 5 (t=1), 6 (t=9), 7 (t=4), 5 again (t=10: a repeat of a train pair)
    # user 1: items 1 and 2 both at t=3 (tie: the later row counts as later), item 3 at t=2
    # user 2: one item -> train only; user 3: two items -> train + test
    user = [0, 0, 0, 0, 1, 1, 1, 2, 3, 3]
    item = [5, 6, 7, 5, 1, 2, 3, 0, 1, 2]
    ts = [1, 9, 4, 10, 3, 3, 2, 0, 5, 6]
    data = InteractionData(user, item, ts, IdVocab.range(4, 8))
    split = leave_one_out(data)
    assert sorted(zip(split.test.user.tolist(), split.test.item.tolist())) == [(0, 6), (1, 2), (3, 2)]
    assert sorted(zip(split.valid.user.tolist(), split.valid.item.tolist())) == [(0, 7), (1, 1)]
    assert sorted(zip(split.train.user.tolist(), split.train.item.tolist(), split.train.timestamp.tolist())) == [
        (0, 5, 1), (0, 5, 10), (1, 3, 2), (2, 0, 0), (3, 1, 5)]


def test_leave_one_out_matches_brute_force():
    data = _random_data(n=3_000, n_users=50, n_items=400, seed=1, time_range=50)
    split = leave_one_out(data)
    _check_partition(data, split)
    for u in range(data.n_users):
        rows = np.flatnonzero(data.user == u)
        first_seen = {}
        for r in rows:  # rows in data order; the earliest (time, row) dates a pair
            key = (data.timestamp[r], r)
            first_seen[data.item[r]] = min(first_seen.get(data.item[r], key), key)
        by_time = sorted(first_seen, key=first_seen.get)
        test = split.test.item[split.test.user == u]
        valid = split.valid.item[split.valid.user == u]
        assert list(test) == ([by_time[-1]] if len(by_time) >= 2 else [])
        assert list(valid) == ([by_time[-2]] if len(by_time) >= 3 else [])


def test_temporal_split_is_a_global_time_cut():
    data = _random_data(n=5_000, seed=2, time_range=1_000_000)
    split = temporal_split(data, (0.7, 0.1, 0.2))
    _check_partition(data, split)
    # every pair's first row is no later than any later part's first rows
    first_time = {}
    for u, i, t in zip(data.user.tolist(), data.item.tolist(), data.timestamp.tolist()):
        first_time[(u, i)] = min(first_time.get((u, i), t), t)
    parts = [[first_time[p] for p in set(zip(part.user.tolist(), part.item.tolist()))]
             for part in (split.train, split.valid, split.test)]
    assert max(parts[0]) <= min(parts[1]) and max(parts[1]) <= min(parts[2])
    n_pairs = len(first_time)
    assert [len(p) for p in parts] == [round(n_pairs * 0.7), round(n_pairs * 0.8) - round(n_pairs * 0.7),
                                       n_pairs - round(n_pairs * 0.8)]


def test_make_split_by_name_and_bad_arguments():
    data = _random_data(n=500)
    assert make_split(data, "loo").describe() == leave_one_out(data).describe()
    assert make_split(data, "random", ratios=(0.5, 0.5), seed=3).valid.user.size == 0
    with pytest.raises(UserInputError, match="unknown split"):
        make_split(data, "kfold")
    with pytest.raises(UserInputError, match="ratios"):
        make_split(data, "temporal", ratios=(0.5, 0.6, 0.1))
    with pytest.raises(UserInputError, match="seed"):
        make_split(data, "temporal", seed=1)
