"""Negative sampling for implicit feedback: items a user has not interacted with in training.

Draws are vectorized: candidates for every (user, slot) are drawn at once and checked against
the user's training positives with one `searchsorted` over the sorted (user, item) keys of the
CSR matrix; only the rejected slots are drawn again. A user's own training positives are never
returned. Rows still rejected after `max_rounds` (users who interacted with almost every item)
are drawn exactly from their complement, so sampling always terminates.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recsys.errors import UserInputError

log = logging.getLogger(__name__)

SamplerKind = Literal["uniform", "popularity"]


class NegativeSampler:
    """Samples negatives for users from the items outside their training positives.

    `strategy="uniform"` draws items uniformly; `"popularity"` draws item i with probability
    proportional to (training count of i + 1) ** `popularity_exponent` (the +1 keeps items never
    seen in training reachable; 0.75 is word2vec's damping, 1.0 is raw popularity).
    """

    def __init__(self, positives: sp.csr_matrix, strategy: SamplerKind = "uniform",
                 popularity_exponent: float = 0.75, max_rounds: int = 64):
        if strategy not in ("uniform", "popularity"):
            raise UserInputError(f"sampler must be 'uniform' or 'popularity', got {strategy!r}")
        positives = sp.csr_matrix(positives, dtype=np.float32, copy=True)
        positives.sum_duplicates()
        positives.sort_indices()
        self.n_users, self.n_items = positives.shape
        self.strategy = strategy
        self.max_rounds = max_rounds
        self.indptr = positives.indptr.astype(np.int64)
        self.indices = positives.indices.astype(np.int64)
        counts = np.diff(self.indptr)
        full = np.flatnonzero(counts >= self.n_items)
        if len(full):
            raise UserInputError(
                f"{len(full)} user(s) (first internal id {full[0]}) interacted with every one of the "
                f"{self.n_items} items in training, so no negative item exists for them")
        # Sorted global keys user * n_items + item: rows are in order and indices sorted in each row.
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), counts)
        self.keys = rows * self.n_items + self.indices
        self.item_weights: np.ndarray | None = None  # None: uniform
        self.cdf: np.ndarray | None = None
        if strategy == "popularity":
            self.item_weights = (np.bincount(self.indices, minlength=self.n_items) + 1.0) ** popularity_exponent
            self.cdf = np.cumsum(self.item_weights / self.item_weights.sum())
            self.cdf[-1] = 1.0

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if self.cdf is None:
            return rng.integers(0, self.n_items, size=size, dtype=np.int64)
        return np.searchsorted(self.cdf, rng.random(size), side="right").astype(np.int64)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is a training positive (arrays of equal shape)."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        at = np.searchsorted(self.keys, keys)
        at[at == len(self.keys)] = 0
        return (self.keys[at] == keys) if len(self.keys) else np.zeros(keys.shape, dtype=bool)

    def sample(self, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` negatives for each user in `users`: an int64 array of shape (len(users), n)."""
        if n < 1:
            raise UserInputError(f"negatives per positive must be >= 1, got {n}")
        users = np.asarray(users, dtype=np.int64)
        owners = np.repeat(users, n)
        items = self._draw(len(owners), rng)
        pending = np.flatnonzero(self.is_positive(owners, items))
        for _ in range(self.max_rounds):
            if not len(pending):
                break
            items[pending] = self._draw(len(pending), rng)
            pending = pending[self.is_positive(owners[pending], items[pending])]
        for slot in pending:  # only users who hold nearly the whole catalog get here
            items[slot] = self._draw_from_complement(int(owners[slot]), rng)
        return items.reshape(len(users), n)

    def _draw_from_complement(self, user: int, rng: np.random.Generator) -> int:
        seen = self.indices[self.indptr[user]:self.indptr[user + 1]]
        free = np.setdiff1d(np.arange(self.n_items, dtype=np.int64), seen, assume_unique=True)
        if self.cdf is None:
            return int(rng.choice(free))
        weights = np.diff(self.cdf, prepend=0.0)[free]
        return int(rng.choice(free, p=weights / weights.sum()))
