"""Sets of (user, item) pairs in CSR form: what a user must not be shown, what is relevant to them.

The evaluator needs three questions answered fast for a batch of users: which cells of the
score matrix to hide, whether a recommended item is relevant, and how many relevant items a
user has. One sorted array of keys `user * n_items + item` answers all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.data.interactions import InteractionData


@dataclass(frozen=True)
class UserItemSet:
    """Distinct (user, item) pairs, rows sorted by user then item (CSR: `indptr`, `indices`)."""

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int
    _keys: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr, dtype=np.int64)
        indices = np.asarray(self.indices, dtype=np.int64)
        rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
        keys = rows * self.n_items + indices
        if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
            # A CSR built elsewhere may hold unsorted or repeated items in a row: canonicalize.
            keys = np.unique(keys)
            rows = keys // self.n_items
            indptr = np.zeros_like(indptr)
            np.cumsum(np.bincount(rows, minlength=len(indptr) - 1), out=indptr[1:])
            indices = keys - rows * self.n_items
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "_keys", keys)

    @classmethod
    def from_pairs(cls, users, items, n_users: int, n_items: int) -> UserItemSet:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        keys = np.sort(users * n_items + items)
        # Sorting then dropping repeats is several times faster than np.unique's hashing here.
        distinct = np.ones(len(keys), dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
        return cls._from_keys(keys[distinct], n_users, n_items)

    @classmethod
    def _from_keys(cls, keys: np.ndarray, n_users: int, n_items: int) -> UserItemSet:
        rows = keys // n_items
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
        return cls(indptr, (keys - rows * n_items).astype(np.int64), n_items)

    @classmethod
    def empty(cls, n_users: int, n_items: int) -> UserItemSet:
        return cls(np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), n_items)

    @classmethod
    def union_of(cls, data: Sequence[InteractionData], n_users: int, n_items: int) -> UserItemSet:
        """Every (user, item) pair in any of `data`, whatever its label (a seen item is a seen item)."""
        if not data:
            return cls.empty(n_users, n_items)
        return cls.from_pairs(np.concatenate([d.user for d in data]), np.concatenate([d.item for d in data]),
                              n_users, n_items)

    @classmethod
    def positives_of(cls, data: InteractionData) -> UserItemSet:
        """The positive (user, item) pairs of `data` (every row when it has no label)."""
        pos = data.positives()
        return cls.from_pairs(pos.user, pos.item, data.n_users, data.n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def __len__(self) -> int:
        return len(self.indices)

    def keys(self) -> np.ndarray:
        """Sorted int64 keys user * n_items + item."""
        return self._keys

    def row_counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def items_of(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user]:self.indptr[user + 1]]

    def cells(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of the user in `users`, item) for every pair of the given users."""
        users = np.asarray(users, dtype=np.int64)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        positions = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
        # Index of each pair inside its row, then offset by the row's start in `indices`.
        offsets = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return positions, self.indices[np.repeat(starts, lengths) + offsets]

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array shaped like `items` (one row per user): is (user, item) in the set?

        Negative items (empty list slots) are never contained.
        """
        items = np.asarray(items, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64).reshape(-1, *([1] * (items.ndim - 1)))
        keys = self._keys
        if len(keys) == 0:
            return np.zeros(items.shape, dtype=bool)
        query = users * self.n_items + items
        found = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return (items >= 0) & (keys[found] == query)

    def difference(self, other: UserItemSet) -> tuple[UserItemSet, int]:
        """This set without the pairs in `other`, and how many pairs were removed."""
        keys, others = self._keys, other._keys
        # Both key arrays are sorted: a binary search beats np.isin, which sorts again.
        found = np.minimum(np.searchsorted(others, keys), max(len(others) - 1, 0))
        drop = others[found] == keys if len(others) else np.zeros(len(keys), dtype=bool)
        return UserItemSet._from_keys(keys[~drop], self.n_users, self.n_items), int(drop.sum())
