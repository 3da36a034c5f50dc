"""Train/validation/test splits that never leak, deterministic by seed, vectorized.

The unit of a split is the (user, item) pair, not the row: when a user interacted with an
item several times, all those rows land in the same part. So an item in a user's validation or
test set is never in that user's training set, and no row is ever dropped. A pair is dated by
its first row (when the user met the item); ties in time are broken by position in the data
(the later row counts as later). Consequence worth knowing: with repeat interactions, a
training pair may hold rows dated after the test pair; run
`recsys.data.filters.deduplicate(data, "first")` first if that matters to you.

- `random_split`: per user, a seeded shuffle of the user's pairs; each user contributes
  round(n * ratio) pairs (halves round up) to valid and to test, but at least one pair stays in
  train: where the rounding asks for too many, valid gives way first, then test.
- `leave_one_out`: per user by time: the latest pair -> test, the second-latest -> valid, the
  rest -> train. A user with two pairs gives no validation pair; a user with one stays in train.
- `temporal_split`: one global time order of all pairs, cut by the ratios, so every training
  pair is no later than every validation pair, which is no later than every test pair.
  Validation/test users or items that training never saw are counted in the log.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import numpy as np

from recsys.data.interactions import InteractionData, Split
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

TRAIN, VALID, TEST = 0, 1, 2


class _Pairs:
    """Distinct (user, item) pairs of the data, and which pair each row belongs to.

    Sorting is the cost of a split, so several sort keys are packed into one int64 where they
    fit (`_order_by`): one argsort instead of a multi-key lexsort.
    """

    def __init__(self, data: InteractionData):
        n = len(data)
        # Every row's place in time, ties broken by position: a unique, total order.
        self.time_rank = np.empty(n, dtype=np.int64)
        if n:
            since = data.timestamp - data.timestamp.min()
            self.time_rank[_order_by(since, int(since.max()) + 1, np.arange(n, dtype=np.int64), n)] = np.arange(n)
        key = data.user * np.int64(max(1, data.n_items)) + data.item
        order = _order_by(key, data.n_users * max(1, data.n_items), self.time_rank, n)
        sorted_key = key[order]
        starts = np.ones(n, dtype=bool)
        starts[1:] = sorted_key[1:] != sorted_key[:-1]
        self.of_row = np.empty(n, dtype=np.int64)
        self.of_row[order] = np.cumsum(starts) - 1
        first_rows = order[starts]  # each pair's earliest row
        self.user = data.user[first_rows]
        self.n_users = data.n_users
        self.time_rank = self.time_rank[first_rows]  # unique per pair, so it orders pairs in time
        self.n_rows = n

    def __len__(self) -> int:
        return len(self.user)

    def rank_within_user(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For pairs visited in `order` (grouped by user), each one's rank in its user and the user's size."""
        users = self.user[order]
        counts = np.bincount(users)
        group_start = np.cumsum(counts) - counts
        rank = np.arange(len(order)) - group_start[users]
        return rank, counts[users]


def _order_by(major: np.ndarray, major_size: int, minor: np.ndarray, minor_size: int) -> np.ndarray:
    """Row order by `major`, then `minor` (both non-negative ints below their sizes; minor unique)."""
    if major_size * minor_size < 2**62:
        return np.argsort(major * np.int64(minor_size) + minor)
    return np.lexsort((minor, major))


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) == 2:
        ratios = (ratios[0], 0.0, ratios[1])
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise UserInputError(f"split ratios must be 2 or 3 non-negative numbers summing to 1, got {ratios}")
    return ratios  # type: ignore[return-value]


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5 + 1e-9).astype(np.int64)


def _assemble(data: InteractionData, pairs: _Pairs, pair_part: np.ndarray, how: str) -> Split:
    row_part = pair_part[pairs.of_row]
    split = Split(*(data.subset(row_part == part) for part in (TRAIN, VALID, TEST)))
    repeated = pairs.n_rows - len(pairs)
    note = f"; {repeated:,} repeat rows stayed with their (user, item) pair" if repeated else ""
    log.info("%s split: %s%s", how, split.describe(), note)
    return split


def random_split(data: InteractionData, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per user, a seeded random share of the user's pairs to valid and test (see the module doc)."""
    _, r_valid, r_test = _check_ratios(ratios)
    pairs = _Pairs(data)
    shuffle = np.random.default_rng(seed).permutation(len(pairs))
    order = _order_by(pairs.user, pairs.n_users, shuffle, len(pairs))
    rank, size = pairs.rank_within_user(order)
    n_valid = _round_half_up(size * r_valid)
    n_test = _round_half_up(size * r_test)
    # Keep at least one training pair per user: take the excess from valid first, then test.
    excess = np.maximum(n_valid + n_test - (size - 1), 0)
    cut_valid = np.minimum(excess, n_valid)
    n_valid, n_test = n_valid - cut_valid, n_test - (excess - cut_valid)
    n_train = size - n_valid - n_test
    part_sorted = np.where(rank < n_train, TRAIN, np.where(rank < n_train + n_valid, VALID, TEST))
    pair_part = np.empty(len(pairs), dtype=np.int64)
    pair_part[order] = part_sorted
    return _assemble(data, pairs, pair_part, f"random (seed {seed})")


def leave_one_out(data: InteractionData) -> Split:
    """Per user by time: latest pair -> test, second-latest -> valid, the rest -> train."""
    pairs = _Pairs(data)
    order = _order_by(pairs.user, pairs.n_users, pairs.time_rank, pairs.n_rows)
    rank, size = pairs.rank_within_user(order)
    from_end = size - 1 - rank
    part_sorted = np.where((from_end == 0) & (size >= 2), TEST,
                           np.where((from_end == 1) & (size >= 3), VALID, TRAIN))
    pair_part = np.empty(len(pairs), dtype=np.int64)
    pair_part[order] = part_sorted
    return _assemble(data, pairs, pair_part, "leave-one-out")


def temporal_split(data: InteractionData, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """One global time order of the pairs, cut by the ratios (see the module doc)."""
    r_train, r_valid, _ = _check_ratios(ratios)
    pairs = _Pairs(data)
    order = np.argsort(pairs.time_rank)
    n_train = int(_round_half_up(np.array(len(pairs) * r_train)))
    n_valid = int(_round_half_up(np.array(len(pairs) * (r_train + r_valid)))) - n_train
    part_sorted = np.repeat([TRAIN, VALID, TEST], [n_train, n_valid, len(pairs) - n_train - n_valid])
    pair_part = np.empty(len(pairs), dtype=np.int64)
    pair_part[order] = part_sorted
    split = _assemble(data, pairs, pair_part, "temporal")
    _log_cold(split)
    return split


def _log_cold(split: Split) -> None:
    seen_users = np.zeros(split.train.n_users, dtype=bool)
    seen_users[split.train.user] = True
    seen_items = np.zeros(split.train.n_items, dtype=bool)
    seen_items[split.train.item] = True
    for name in ("valid", "test"):
        part = getattr(split, name)
        cold_users = len(np.unique(part.user[~seen_users[part.user]]))
        cold_items = len(np.unique(part.item[~seen_items[part.item]]))
        if cold_users or cold_items:
            log.info("temporal split: %s holds %d users and %d items that train never saw", name, cold_users,
                     cold_items)


SPLITS = {"random": random_split, "leave_one_out": leave_one_out, "loo": leave_one_out,
          "temporal": temporal_split}


def make_split(data: InteractionData, how: str, **options) -> Split:
    """A split by name: "random" (ratios, seed), "leave_one_out"/"loo", "temporal" (ratios)."""
    if how not in SPLITS:
        raise UserInputError(f"unknown split {how!r}; known: {', '.join(SPLITS)}")
    split = SPLITS[how]
    try:
        inspect.signature(split).bind(data, **options)
    except TypeError as error:
        raise UserInputError(f"split {how!r}: {error}") from error
    return split(data, **options)


def count_overlap(train: InteractionData, other: InteractionData) -> int:
    """Rows of `other` whose (user, item) pair also occurs in `train` (0 for a split that does not leak)."""
    width = np.int64(max(1, train.n_items, other.n_items))
    return int(np.isin(other.user * width + other.item, train.user * width + train.item).sum())
