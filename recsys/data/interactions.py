"""The canonical in-memory form of preference data.

Every loader returns an `InteractionData`; every model consumes one. Ids inside are dense
integers (0..n-1); `IdVocab` maps them back to the outside ids, so conversion happens once,
at the edge.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


@dataclass(frozen=True)
class IdVocab:
    """Outside ids (as strings) indexed by the dense internal id."""

    users: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", np.asarray(self.users, dtype=object).astype(str).astype(object))
        object.__setattr__(self, "items", np.asarray(self.items, dtype=object).astype(str).astype(object))

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_ids(cls, users, items) -> IdVocab:
        """A vocabulary of the distinct outside ids, in order of first appearance."""
        return cls(pd.unique(pd.Series(users, dtype=str)), pd.unique(pd.Series(items, dtype=str)))

    @classmethod
    def range(cls, n_users: int, n_items: int) -> IdVocab:
        return cls(np.arange(n_users).astype(str), np.arange(n_items).astype(str))

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    def item_index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.items)}

    def encode_users(self, outside) -> np.ndarray:
        """Internal ids for outside user ids; -1 where the vocabulary lacks one."""
        return _encode(self.users, outside)

    def encode_items(self, outside) -> np.ndarray:
        return _encode(self.items, outside)

    def digest(self) -> str:
        """A sha256 of both id lists, so a bundle or checkpoint can prove which vocabulary it was trained on."""
        h = hashlib.sha256()
        for ids in (self.users, self.items):
            h.update(str(len(ids)).encode())
            h.update("\x1f".join(ids).encode())
        return h.hexdigest()


def _encode(vocab: np.ndarray, outside) -> np.ndarray:
    index = pd.Index(vocab)
    return index.get_indexer(pd.Series(outside, dtype=str)).astype(np.int64)


@dataclass(frozen=True)
class Catalog:
    """Item side information, one row per internal item id (row i describes item i).

    Columns: `title`, `text`, `category` (strings) plus any attribute columns.
    """

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        frame = self.frame.reset_index(drop=True)
        for column in ("title", "text", "category"):
            if column not in frame:
                frame[column] = ""
            frame[column] = frame[column].fillna("").astype(str)
        object.__setattr__(self, "frame", frame)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def titles(self) -> np.ndarray:
        return self.frame["title"].to_numpy()

    @property
    def categories(self) -> np.ndarray:
        return self.frame["category"].to_numpy()

    def category_codes(self) -> tuple[np.ndarray, list[str]]:
        """Dense category ids per item and the category names they index."""
        codes, names = pd.factorize(self.frame["category"], sort=True)
        return codes.astype(np.int64), list(names)


@dataclass(frozen=True)
class UserProfiles:
    """User side information, one row per internal user id.

    `traits` holds the Big-Five scores (n_users x 5, columns in `BIG_FIVE` order, NaN where
    unknown); `demographics` any further per-user columns (age, gender, ...).
    """

    traits: np.ndarray
    demographics: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        traits = np.asarray(self.traits, dtype=np.float32)
        if traits.ndim != 2 or traits.shape[1] != len(BIG_FIVE):
            raise ValueError(f"traits must be (n_users, {len(BIG_FIVE)}), got {traits.shape}")
        object.__setattr__(self, "traits", traits)
        object.__setattr__(self, "demographics", self.demographics.reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.traits)


@dataclass(frozen=True)
class InteractionData:
    """Interactions as parallel integer arrays plus the vocabulary and side information.

    `user`, `item`: internal ids (int64). `timestamp`: seconds (int64). `rating`: float32 or None.
    `label`: float32 in {0, 1} or None (None means every row is an observed positive).
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    vocab: IdVocab
    rating: np.ndarray | None = None
    label: np.ndarray | None = None
    catalog: Catalog | None = None
    profiles: UserProfiles | None = None

    def __post_init__(self) -> None:
        n = len(self.user)
        object.__setattr__(self, "user", np.asarray(self.user, dtype=np.int64))
        object.__setattr__(self, "item", np.asarray(self.item, dtype=np.int64))
        object.__setattr__(self, "timestamp", np.asarray(self.timestamp, dtype=np.int64))
        for name, dtype in (("rating", np.float32), ("label", np.float32)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.asarray(value, dtype=dtype))
        for name in ("item", "timestamp", "rating", "label"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"InteractionData.{name} has {len(value)} rows, user has {n}")
        if n and (self.user.min() < 0 or self.user.max() >= self.n_users):
            raise ValueError("InteractionData.user holds ids outside the vocabulary")
        if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise ValueError("InteractionData.item holds ids outside the vocabulary")

    # sizes -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return self.vocab.n_users

    @property
    def n_items(self) -> int:
        return self.vocab.n_items

    # derived views ---------------------------------------------------------------------------
    def subset(self, rows) -> InteractionData:
        """The same data restricted to `rows` (boolean mask or index array); vocabulary and side info kept."""
        def pick(column: np.ndarray | None) -> np.ndarray | None:
            return None if column is None else column[rows]

        return replace(self, user=self.user[rows], item=self.item[rows], timestamp=self.timestamp[rows],
                       rating=pick(self.rating), label=pick(self.label))

    def positives(self) -> InteractionData:
        """Rows that are positives (all rows when there is no label)."""
        return self if self.label is None else self.subset(self.label > 0)

    def matrix(self, dtype=np.float32) -> sp.csr_matrix:
        """Binary user x item CSR matrix of the (positive) rows; duplicates count once."""
        pos = self.positives()
        m = sp.csr_matrix((np.ones(len(pos), dtype=dtype), (pos.user, pos.item)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        m.data[:] = 1
        return m

    def item_counts(self) -> np.ndarray:
        pos = self.positives()
        return np.bincount(pos.item, minlength=self.n_items)

    def user_counts(self) -> np.ndarray:
        pos = self.positives()
        return np.bincount(pos.user, minlength=self.n_users)

    def to_frame(self, outside_ids: bool = True) -> pd.DataFrame:
        """A DataFrame with columns user, item, timestamp[, rating][, label]."""
        columns = {
            "user": self.vocab.users[self.user] if outside_ids else self.user,
            "item": self.vocab.items[self.item] if outside_ids else self.item,
            "timestamp": self.timestamp,
        }
        if self.rating is not None:
            columns["rating"] = self.rating
        if self.label is not None:
            columns["label"] = self.label
        return pd.DataFrame(columns)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, vocab: IdVocab | None = None, **side) -> InteractionData:
        """Build from a frame with outside ids in `user` and `item` (and optional timestamp, rating, label).

        With `vocab` given, ids must already be in it (callers that need a clear error for
        unknown ids check `vocab.encode_*` for -1 first); otherwise a vocabulary is made.
        """
        if vocab is None:
            vocab = IdVocab.from_ids(frame["user"], frame["item"])
        users = vocab.encode_users(frame["user"])
        items = vocab.encode_items(frame["item"])
        if (users < 0).any() or (items < 0).any():
            raise ValueError("from_frame: ids not in the given vocabulary")
        ts = frame["timestamp"].to_numpy() if "timestamp" in frame else np.zeros(len(frame), dtype=np.int64)
        return cls(
            user=users, item=items, timestamp=ts, vocab=vocab,
            rating=frame["rating"].to_numpy() if "rating" in frame else None,
            label=frame["label"].to_numpy() if "label" in frame else None,
            **side,
        )

    def describe(self) -> str:
        density = len(self) / max(1, self.n_users * self.n_items)
        return f"{len(self):,} interactions, {self.n_users:,} users, {self.n_items:,} items (density {density:.4%})"


@dataclass(frozen=True)
class Split:
    """A train/validation/test split of one data set; all three share one vocabulary."""

    train: InteractionData
    valid: InteractionData
    test: InteractionData

    def describe(self) -> str:
        return f"train {len(self.train):,} / valid {len(self.valid):,} / test {len(self.test):,}"
