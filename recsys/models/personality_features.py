"""What the personality ranker sees of a user and an item, as integer ids and dense numbers.

`FeatureSpace.build(data)` turns the side information of a data set into model inputs, once:

- item side: the item id and its category (from the catalog; one shared "none" category without one);
- user side: the user id, one categorical field per demographic column, the multi-hot tastes (the
  '|'-separated tokens of the `tastes` demographic column), and the five Big-Five traits.

Sparse ids are 1-based: id 0 of every field means "unknown / none" and maps to an empty bag, so a
value never seen at build time, or a missing one, contributes nothing. Numeric demographic columns
with more than `max_categories` distinct values (age, income) are cut into quantile bins. Traits
are standardized with the mean and standard deviation over the users that have them; an unknown
trait becomes 0 (the mean) and its mask 0.

A feature space is plain data (lists and numbers): it travels in checkpoints as JSON-able values
and in bundles as JSON, and `encode_profile` turns a new user's raw profile (as an API request
would carry it) into the same ids and numbers, value by value with `bundleformat.profile`, the
encoding the server shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bundleformat.profile import UNKNOWN, demographic_id, taste_ids, token
from recsys.data.interactions import BIG_FIVE, InteractionData
from recsys.errors import UserInputError

TASTES_COLUMN = "tastes"
TASTE_SEPARATOR = "|"


@dataclass
class DemographicField:
    """One categorical user field: its values (id = position + 1), or bin edges for a numeric column."""

    name: str
    values: list[str] = field(default_factory=list)
    edges: list[float] | None = None  # numeric column cut into len(edges) + 1 bins

    @property
    def size(self) -> int:
        """Rows of its table, including row 0 (unknown)."""
        return 1 + (len(self.edges) + 1 if self.edges is not None else len(self.values))

    def encode(self, values: Sequence[Any]) -> np.ndarray:
        """Ids (1-based; 0 for missing or never-seen values) of raw values."""
        series = pd.Series(list(values), dtype=object)
        if self.edges is not None:
            numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            ids = np.searchsorted(np.asarray(self.edges), numbers, side="right") + 1
            return np.where(np.isnan(numbers), UNKNOWN, ids).astype(np.int64)
        index = {v: i + 1 for i, v in enumerate(self.values)}
        return np.array([index.get(token(v), UNKNOWN) for v in series], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "edges": self.edges}


def _numeric(column: pd.Series) -> pd.Series | None:
    present = column[column.map(token).notna()]
    if not len(present):
        return None
    numbers = pd.to_numeric(present, errors="coerce")
    return numbers if numbers.notna().all() else None


def _build_field(name: str, column: pd.Series, max_categories: int) -> DemographicField:
    numbers = _numeric(column)
    if numbers is not None and numbers.nunique() > max_categories:
        quantiles = np.quantile(numbers.to_numpy(dtype=np.float64), np.linspace(0, 1, max_categories + 1)[1:-1])
        return DemographicField(name, edges=[float(e) for e in np.unique(quantiles)])
    tokens = column.map(token).dropna()
    counts = tokens.value_counts(sort=False)
    # Most frequent first, ties by name, so the same data always gives the same ids.
    ordered = sorted(counts.index, key=lambda v: (-counts[v], v))
    return DemographicField(name, values=[str(v) for v in ordered])


@dataclass
class FeatureSpace:
    """Ids and numbers per user and per item, plus the vocabularies that made them."""

    n_users: int
    n_items: int
    categories: list[str]
    item_category: np.ndarray  # (n_items,) int64, 0 = none
    fields: list[DemographicField]
    user_demographics: np.ndarray  # (n_users, len(fields)) int64, 0 = unknown
    tastes: list[str]
    taste_indptr: np.ndarray  # CSR rows of taste ids (1-based) per user
    taste_indices: np.ndarray
    trait_mean: np.ndarray  # (5,) float32
    trait_std: np.ndarray  # (5,) float32
    user_traits: np.ndarray  # (n_users, 5) float32, standardized, 0 where unknown
    user_trait_mask: np.ndarray  # (n_users, 5) float32, 1 where known

    # building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, data: InteractionData, demographic_fields: Sequence[str] | None = None,
              max_categories: int = 8) -> FeatureSpace:
        """From `data`'s catalog and profiles (either may be missing). `demographic_fields`: the
        demographic columns to use (default: all but `tastes`); naming one that is absent is an error."""
        n_users, n_items = data.n_users, data.n_items
        categories, item_category = _categories(data)
        demographics = data.profiles.demographics if data.profiles is not None else pd.DataFrame()
        available = [c for c in demographics.columns if c != TASTES_COLUMN]
        if demographic_fields is None:
            names = available
        else:
            names = list(demographic_fields)
            missing = [n for n in names if n not in available]
            if missing:
                raise UserInputError(f"demographic field(s) {missing} are not in the user profiles "
                                     f"(available: {', '.join(available) or 'none'})")
        fields = [_build_field(n, demographics[n], max_categories) for n in names]
        user_demo = (np.stack([f.encode(demographics[f.name]) for f in fields], axis=1) if fields
                     else np.zeros((n_users, 0), dtype=np.int64))
        tastes, indptr, indices = _tastes(demographics, n_users)
        traits = (data.profiles.traits if data.profiles is not None
                  else np.full((n_users, len(BIG_FIVE)), np.nan, dtype=np.float32))
        known = ~np.isnan(traits)
        mean = np.array([traits[known[:, j], j].mean() if known[:, j].any() else 0.0 for j in range(len(BIG_FIVE))],
                        dtype=np.float32)
        std = np.array([traits[known[:, j], j].std() if known[:, j].sum() > 1 else 1.0
                        for j in range(len(BIG_FIVE))], dtype=np.float32)
        std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        space = cls(n_users=n_users, n_items=n_items, categories=categories, item_category=item_category,
                    fields=fields, user_demographics=user_demo, tastes=tastes, taste_indptr=indptr,
                    taste_indices=indices, trait_mean=mean, trait_std=std,
                    user_traits=np.zeros((n_users, len(BIG_FIVE)), dtype=np.float32),
                    user_trait_mask=known.astype(np.float32))
        space.user_traits = space.standardize(traits)
        return space

    # sizes ----------------------------------------------------------------------------------
    @property
    def n_categories(self) -> int:
        """Rows of the category table, including row 0 (none)."""
        return len(self.categories) + 1

    @property
    def n_tastes(self) -> int:
        return len(self.tastes) + 1

    @property
    def max_tastes(self) -> int:
        return int(np.diff(self.taste_indptr).max(initial=0))

    # encoding -------------------------------------------------------------------------------
    def standardize(self, traits: np.ndarray) -> np.ndarray:
        """Raw trait scores (n, 5) -> standardized, 0 where unknown (NaN)."""
        z = (np.asarray(traits, dtype=np.float32) - self.trait_mean) / self.trait_std
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def user_rows(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """Features of known users: demographics (B, F), tastes (B, L) padded with 0, traits (B, 5), mask (B, 5)."""
        users = np.asarray(users, dtype=np.int64)
        lengths = self.taste_indptr[users + 1] - self.taste_indptr[users]
        width = max(1, int(lengths.max(initial=0)))
        tastes = np.zeros((len(users), width), dtype=np.int64)
        column = np.arange(width)[None, :]
        valid = column < lengths[:, None]
        tastes[valid] = self.taste_indices[(self.taste_indptr[users][:, None] + column)[valid]]
        return {"demographics": self.user_demographics[users], "tastes": tastes,
                "traits": self.user_traits[users], "trait_mask": self.user_trait_mask[users]}

    def encode_profile(self, traits: Mapping[str, float] | None = None,
                       demographics: Mapping[str, Any] | None = None,
                       tastes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One new user's raw profile -> the same features as `user_rows` gives (batch of 1).

        traits: trait name -> score on the training data's scale (unnamed traits are unknown);
        demographics: field -> raw value (unknown fields and values are ignored: id 0);
        tastes: taste tokens (unknown tokens are ignored).
        """
        traits, demographics = dict(traits or {}), dict(demographics or {})
        unknown = sorted(set(traits) - set(BIG_FIVE))
        if unknown:
            raise UserInputError(f"unknown trait(s) {unknown}; traits are {', '.join(BIG_FIVE)}")
        raw = np.array([[traits.get(t, np.nan) for t in BIG_FIVE]], dtype=np.float32)
        # One value at a time by `bundleformat.profile`, the encoding the server runs for the same request.
        demo = np.array([[demographic_id(demographics.get(f.name), f.values, f.edges) for f in self.fields]],
                        dtype=np.int64)
        ids = taste_ids(tastes or (), {t: i + 1 for i, t in enumerate(self.tastes)})
        return {"demographics": demo.reshape(1, len(self.fields)),
                "tastes": np.array([ids or [UNKNOWN]], dtype=np.int64),
                "traits": self.standardize(raw), "trait_mask": (~np.isnan(raw)).astype(np.float32)}

    # plain data for checkpoints and bundles -----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "n_users": self.n_users, "n_items": self.n_items, "categories": list(self.categories),
            "item_category": self.item_category.tolist(), "fields": [f.to_dict() for f in self.fields],
            "user_demographics": self.user_demographics.tolist(), "tastes": list(self.tastes),
            "taste_indptr": self.taste_indptr.tolist(), "taste_indices": self.taste_indices.tolist(),
            "trait_mean": self.trait_mean.tolist(), "trait_std": self.trait_std.tolist(),
            "user_traits": self.user_traits.tolist(), "user_trait_mask": self.user_trait_mask.tolist(),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> FeatureSpace:
        n_fields = len(payload["fields"])
        return cls(
            n_users=int(payload["n_users"]), n_items=int(payload["n_items"]), categories=list(payload["categories"]),
            item_category=np.asarray(payload["item_category"], dtype=np.int64),
            fields=[DemographicField(f["name"], list(f["values"]), f["edges"]) for f in payload["fields"]],
            user_demographics=np.asarray(payload["user_demographics"], dtype=np.int64).reshape(-1, n_fields),
            tastes=list(payload["tastes"]), taste_indptr=np.asarray(payload["taste_indptr"], dtype=np.int64),
            taste_indices=np.asarray(payload["taste_indices"], dtype=np.int64),
            trait_mean=np.asarray(payload["trait_mean"], dtype=np.float32),
            trait_std=np.asarray(payload["trait_std"], dtype=np.float32),
            user_traits=np.asarray(payload["user_traits"], dtype=np.float32).reshape(-1, len(BIG_FIVE)),
            user_trait_mask=np.asarray(payload["user_trait_mask"], dtype=np.float32).reshape(-1, len(BIG_FIVE)),
        )


def _categories(data: InteractionData) -> tuple[list[str], np.ndarray]:
    if data.catalog is None:
        return [], np.zeros(data.n_items, dtype=np.int64)
    codes, names = data.catalog.category_codes()
    names = [str(n) for n in names]
    if "" in names:  # items without a category share row 0 (none)
        empty = names.index("")
        codes = np.where(codes == empty, -1, np.where(codes > empty, codes - 1, codes))
        names.pop(empty)
    return names, (codes + 1).astype(np.int64)


def _tastes(demographics: pd.DataFrame, n_users: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    if TASTES_COLUMN not in demographics:
        return [], np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    per_user = [list(dict.fromkeys(t for t in str(v).split(TASTE_SEPARATOR) if t.strip()))
                if token(v) is not None else [] for v in demographics[TASTES_COLUMN]]
    vocabulary = sorted({t for tokens in per_user for t in tokens})
    index = {t: i + 1 for i, t in enumerate(vocabulary)}
    lengths = np.array([len(t) for t in per_user], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.array([index[t] for tokens in per_user for t in tokens], dtype=np.int64)
    return vocabulary, indptr, indices
