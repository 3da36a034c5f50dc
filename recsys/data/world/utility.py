"""True utilities: one dot product per (user, item), never stored for all pairs.

utility(u, i) = latent_weight * <theta_u, phi_i> / sqrt(latent_dim)
              + aspect_weight * <b_u, a_i> / sqrt(aspects_per_item)
              + category_weight * c_u[category_i]
              + quality_weight * q_i

Each term has about unit variance before its weight. User u truly likes item i when utility(u, i)
exceeds the user's threshold, set halfway between the utilities ranked `liked_per_user` and
`liked_per_user + 1`, so every user likes exactly that many items and recomputing a utility with
different float rounding cannot flip the verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.data.world.catalog import Items
from recsys.data.world.config import WorldConfig

# Users per batch are chosen so one batch's utility matrix holds about this many cells (16 MB).
BATCH_CELLS = 1 << 21
PAIR_CHUNK = 1 << 20
# Added to item i's bias as TIE_BREAK * i / n_items: with some weights at 0 (no latent, no
# quality) utilities can tie exactly, and a like threshold needs distinct values to sit between.
TIE_BREAK = 1e-7


@dataclass(frozen=True)
class UtilityModel:
    user_vectors: np.ndarray  # (n_users, D) float64, term weights folded in
    item_vectors: np.ndarray  # (n_items, D) float64
    item_bias: np.ndarray  # (n_items,) float64
    like_threshold: np.ndarray  # (n_users,) float64
    user_mean: np.ndarray  # (n_users,) mean utility over the whole catalog
    user_std: np.ndarray  # (n_users,) its standard deviation

    @property
    def n_users(self) -> int:
        return len(self.user_vectors)

    @property
    def n_items(self) -> int:
        return len(self.item_vectors)

    @classmethod
    def build(cls, config: WorldConfig, tastes: np.ndarray, items: Items) -> UtilityModel:
        users = cls.fold_weights(config, tastes)
        onehot = np.zeros((len(items), config.n_categories))
        onehot[np.arange(len(items)), items.category] = 1.0
        item_vectors = np.hstack([items.latent, items.aspect_values.astype(np.float64), onehot])
        bias = items.quality * config.quality_weight + TIE_BREAK * np.arange(len(items)) / len(items)

        n_users = len(users)
        threshold, mean, std = np.empty(n_users), np.empty(n_users), np.empty(n_users)
        liked = config.liked_per_user
        model = cls(users, item_vectors, bias, threshold, mean, std)
        for rows, utility in model.batches():
            threshold[rows] = thresholds(utility, liked)
            mean[rows] = utility.mean(axis=1)
            std[rows] = utility.std(axis=1)
        return model

    @staticmethod
    def fold_weights(config: WorldConfig, tastes: np.ndarray) -> np.ndarray:
        """Taste vectors with the term weights folded in: one dot product with an item vector is the utility."""
        d, a = config.latent_dim, config.n_aspects
        theta, b, c = tastes[:, :d], tastes[:, d:d + a], tastes[:, d + a:]
        return np.hstack([theta * (config.latent_weight / np.sqrt(d)),
                          b * (config.aspect_weight / np.sqrt(config.aspects_per_item)),
                          c * config.category_weight])

    def of_tastes(self, config: WorldConfig, tastes: np.ndarray) -> np.ndarray:
        """Utilities over all items of taste vectors that need not belong to any user, (len(tastes), n_items)."""
        return self.fold_weights(config, np.asarray(tastes, dtype=np.float64)) @ self.item_vectors.T + self.item_bias

    @staticmethod
    def taste_dim(config: WorldConfig) -> int:
        return config.latent_dim + config.n_aspects + config.n_categories

    # utilities -----------------------------------------------------------------------------
    def matrix(self, users, items=None) -> np.ndarray:
        """Utilities of `users` for all items (or for `items`), shape (len(users), n_items or len(items))."""
        vectors = self.item_vectors if items is None else self.item_vectors[items]
        bias = self.item_bias if items is None else self.item_bias[items]
        return self.user_vectors[users] @ vectors.T + bias

    def pairs(self, users, items) -> np.ndarray:
        """Utility of each (users[k], items[k]) pair, computed in chunks."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        out = np.empty(len(users))
        for start in range(0, len(users), PAIR_CHUNK):
            u, i = users[start:start + PAIR_CHUNK], items[start:start + PAIR_CHUNK]
            out[start:start + PAIR_CHUNK] = np.einsum("nd,nd->n", self.user_vectors[u], self.item_vectors[i])
            out[start:start + PAIR_CHUNK] += self.item_bias[i]
        return out

    def liked_pairs(self, users, items) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        return self.pairs(users, items) > self.like_threshold[users]

    def users_per_batch(self) -> int:
        return max(1, min(self.n_users, BATCH_CELLS // max(1, self.n_items)))

    def batches(self, users: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(user ids, their utility matrix) in batches of bounded memory."""
        users = np.arange(self.n_users) if users is None else np.asarray(users, dtype=np.int64)
        step = self.users_per_batch()
        for start in range(0, len(users), step):
            rows = users[start:start + step]
            yield rows, self.matrix(rows)

    def liked_matrix(self, users: np.ndarray | None = None) -> sp.csr_matrix:
        """Boolean CSR (len(users) x n_items) of every truly liked item, built batch by batch."""
        blocks = []
        for rows, utility in self.batches(users):
            blocks.append(sp.csr_matrix(utility > self.like_threshold[rows, None]))
        if not blocks:
            return sp.csr_matrix((0, self.n_items), dtype=bool)
        return sp.vstack(blocks, format="csr")


def thresholds(utility: np.ndarray, liked: int) -> np.ndarray:
    """Per row, the midpoint between the `liked`-th and (`liked` + 1)-th largest utility."""
    n = utility.shape[1]
    part = np.partition(utility, (n - liked - 1, n - liked), axis=1)
    return (part[:, n - liked - 1] + part[:, n - liked]) / 2
