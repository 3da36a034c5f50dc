"""A generated world: the observations, and the truth kept beside them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.interactions import InteractionData
from recsys.data.world.catalog import Items
from recsys.data.world.config import WorldConfig
from recsys.data.world.population import Population
from recsys.data.world.utility import UtilityModel
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

GENERATOR = "prefengine.world"
GENERATOR_VERSION = 1


@dataclass(frozen=True, eq=False)
class PreferenceWorld:
    """Observed data (what a recommender may train on) plus the ground truth that judges it.

    Observed: `observed` (implicit positives with timestamps and 1-5 ratings, the catalog and
    user profiles attached), `clicks` (every impression with click 0/1), `reviews` and
    `review_sentences`, `preferences` (stated preference sentences).
    Truth: `is_false_positive` (aligned with `observed`), `missed` (liked, exposed, never
    observed), `true_utility`, `truly_liked`, `liked_items`, `clean`, and the hidden `tastes`.
    All id columns hold internal ids (0..n-1); the outside ids are their decimal strings.
    """

    config: WorldConfig
    observed: InteractionData
    is_false_positive: np.ndarray
    observed_utility: np.ndarray
    missed: InteractionData
    clicks: pd.DataFrame
    reviews: pd.DataFrame
    review_sentences: pd.DataFrame
    preferences: pd.DataFrame
    population: Population
    items: Items
    utility: UtilityModel

    # sizes ---------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.config.n_users

    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def tastes(self) -> np.ndarray:
        """Hidden taste vectors (n_users, latent_dim + n_aspects + n_categories), shaped by traits."""
        return self.population.tastes

    @property
    def type_mixture(self) -> np.ndarray | None:
        """Each user's true mixture over the `taste_types` types (n_users, K), or None without types."""
        return self.population.type_mixture

    def type_utilities(self) -> np.ndarray | None:
        """Utilities over all items of a user wholly of each taste type, without individual taste (K, n_items)."""
        types = self.population.type_tastes
        return None if types is None else self.utility.of_tastes(self.config, types)

    @property
    def like_threshold(self) -> np.ndarray:
        """Per user: an item is truly liked when its utility exceeds this."""
        return self.utility.like_threshold

    # truth ---------------------------------------------------------------------------------
    def true_utility(self, users, items=None) -> np.ndarray:
        """True utilities (float64).

        `items` None: the matrix (len(users), n_items); `items` an array as long as `users`: the
        utility of each (users[k], items[k]) pair. Call in user batches for large worlds: the
        matrix is computed, not stored.
        """
        users = self._ids(users, self.n_users, "users")
        if items is None:
            return self.utility.matrix(users)
        return self.utility.pairs(*self._pairs(users, items))

    def truly_liked(self, users, items) -> np.ndarray:
        """Whether each users[k] truly likes items[k], as a bool array."""
        return self.utility.liked_pairs(*self._pairs(users, items))

    def liked_items(self, users=None) -> sp.csr_matrix:
        """Boolean CSR (len(users) x n_items) of every truly liked item, exposed or not."""
        users = None if users is None else self._ids(users, self.n_users, "users")
        return self.utility.liked_matrix(users)

    def clean(self, data: InteractionData) -> InteractionData:
        """The rows of `data` (any split of this world) whose user truly likes the item: the clean-label view."""
        if data.n_users != self.n_users or data.n_items != self.n_items:
            raise UserInputError(f"clean: the data has {data.n_users} users x {data.n_items} items, the world "
                                 f"{self.n_users} x {self.n_items}; it is not a split of this world")
        keep = self.truly_liked(data.user, data.item)
        log.info("clean view keeps %d of %d rows (%d not truly liked)", keep.sum(), len(keep), (~keep).sum())
        return data.subset(keep)

    def sequences(self, clean: bool = False) -> list[np.ndarray]:
        """Per user, the observed item ids in time order (only truly liked ones with `clean`)."""
        data = self.clean(self.observed) if clean else self.observed
        order = np.lexsort((data.timestamp, data.user))  # observed is already in this order; stays safe
        counts = np.bincount(data.user, minlength=self.n_users)
        return np.split(data.item[order], np.cumsum(counts)[:-1])

    def truth_frame(self) -> pd.DataFrame:
        """The observed rows (same order) with their truth: is_false_positive and true_utility."""
        frame = self.observed.to_frame(outside_ids=False)
        frame["is_false_positive"] = self.is_false_positive
        frame["true_utility"] = self.observed_utility
        return frame

    def describe(self) -> str:
        fp = int(self.is_false_positive.sum())
        liked_exposed = len(self.observed) - fp + len(self.missed)
        return (f"{self.observed.describe()}; false positives {fp:,} ({fp / max(1, len(self.observed)):.1%} of "
                f"observed); missing positives {len(self.missed):,} ({len(self.missed) / max(1, liked_exposed):.1%} "
                f"of liked exposed items); {len(self.clicks):,} impressions; {len(self.reviews):,} reviews; "
                f"{len(self.preferences):,} stated preferences")

    # files ---------------------------------------------------------------------------------
    def native_tables(self) -> dict[str, pd.DataFrame]:
        """The extra tables written beside interactions/items/users, ids as outside strings."""
        users, items = self.observed.vocab.users, self.observed.vocab.items

        def outside(frame: pd.DataFrame) -> pd.DataFrame:
            frame = frame.copy()
            for column, vocab in (("user", users), ("item", items)):
                if column in frame:
                    frame[column] = vocab[frame[column].to_numpy()]
            return frame

        missed = self.missed.to_frame(outside_ids=False)
        return {
            "truth": outside(self.truth_frame()),
            "missed": outside(missed),
            "clicks": outside(self.clicks),
            "reviews": outside(self.reviews),
            "review_sentences": outside(self.review_sentences),
            "preferences": outside(self.preferences),
        }

    def to_native(self, directory, file_format: str = "parquet") -> Path:
        """Write the world as a prefengine data directory (see recsys.data.native) with its truth tables.

        `dataset.json` records the generator and the full config, so the same world, hidden
        tastes included, can be regenerated from the files with `generate_world`.
        """
        from recsys.data.native import write_native

        metadata = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION,
                    "world_config": self.config.to_dict(),
                    "world_summary": {"false_positives": int(self.is_false_positive.sum()),
                                      "missing_positives": len(self.missed), "impressions": len(self.clicks),
                                      "reviews": len(self.reviews), "preferences": len(self.preferences)}}
        return write_native(directory, self.observed, tables=self.native_tables(), file_format=file_format,
                            metadata=metadata)

    def _pairs(self, users, items) -> tuple[np.ndarray, np.ndarray]:
        users, items = self._ids(users, self.n_users, "users"), self._ids(items, self.n_items, "items")
        if users.shape != items.shape:
            raise UserInputError(f"users and items must be equally long pairs, got {len(users)} users and "
                                 f"{len(items)} items")
        return users, items

    def __repr__(self) -> str:
        return f"PreferenceWorld(seed={self.config.seed}: {self.describe()})"

    @staticmethod
    def _ids(values, size: int, what: str) -> np.ndarray:
        ids = np.asarray(values, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= size):
            raise UserInputError(f"{what} must be internal ids in 0..{size - 1}")
        return ids
