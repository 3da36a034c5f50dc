"""What every outside format reader produces, and how it becomes an `InteractionData`.

A reader parses its files into `RawInteractions` (outside ids, parsed arrays, and where each row
came from) plus `SideInfo` (item and user tables keyed by outside id). `assemble` builds the
vocabulary, the catalog and the profiles from them in one place, so every format follows the
same rules:

- the vocabulary holds the ids that interact, in order of first appearance;
- an item (user) the side file describes but no interaction names is left out and counted
  (`unused_side="keep"` appends it to the vocabulary instead);
- an item (user) that interacts but the side file lacks gets an empty catalog row (NaN traits),
  and is counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.data.interactions import Catalog, IdVocab, InteractionData
from recsys.data.parsing import Source, profiles_from_frame
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

UNUSED_SIDE_POLICIES = ("drop", "keep")


@dataclass
class RawInteractions:
    """Parsed interaction rows with outside ids; `fields` maps canonical names to the file's columns."""

    user: pd.Series
    item: pd.Series
    timestamp: np.ndarray
    source: Source
    rating: np.ndarray | None = None
    label: np.ndarray | None = None
    fields: dict[str, str] = field(default_factory=lambda: {"user": "user", "item": "item"})

    @classmethod
    def from_columns(cls, columns: dict, source: Source, fields: dict[str, str] | None = None) -> RawInteractions:
        """From the dict `recsys.data.parsing.interaction_columns` returns."""
        return cls(user=columns["user"], item=columns["item"], timestamp=columns["timestamp"], source=source,
                   rating=columns["rating"], label=columns["label"],
                   fields={"user": "user", "item": "item", **(fields or {})})

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class SideInfo:
    """Item and user tables indexed by outside id (strings).

    `items` columns: title, text, category and any attributes. `users` columns: any of the
    Big-Five traits and demographic columns.
    """

    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None


def check_unused_side(policy: str) -> str:
    if policy not in UNUSED_SIDE_POLICIES:
        raise UserInputError(f"unused_side must be one of {UNUSED_SIDE_POLICIES}, got {policy!r}")
    return policy


def assemble(raw: RawInteractions, side: SideInfo | None = None, unused_side: str = "drop") -> InteractionData:
    """Build an `InteractionData` (vocabulary from the rows, catalog and profiles from `side`)."""
    check_unused_side(unused_side)
    side = side or SideInfo()
    # factorize numbers ids in order of first appearance in one hashing pass; ids appended
    # for unused side rows come after, so these codes stay valid.
    user_codes, users = pd.factorize(raw.user)
    item_codes, items = pd.factorize(raw.item)
    users = _with_unused(np.asarray(users, dtype=object), side.users, "users", unused_side, raw.source)
    items = _with_unused(np.asarray(items, dtype=object), side.items, "items", unused_side, raw.source)
    vocab = IdVocab(users, items)
    user_index, item_index = pd.Index(vocab.users), pd.Index(vocab.items)
    catalog = None if side.items is None else Catalog(_aligned(side.items, item_index, "items", raw.source))
    profiles = None if side.users is None else profiles_from_frame(_aligned(side.users, user_index, "users",
                                                                            raw.source), raw.source)
    return InteractionData(
        user=user_codes, item=item_codes,
        timestamp=raw.timestamp, vocab=vocab, rating=raw.rating, label=raw.label,
        catalog=catalog, profiles=profiles,
    )


def _with_unused(ids: np.ndarray, table: pd.DataFrame | None, what: str, policy: str, source: Source) -> np.ndarray:
    if table is None:
        return ids
    unused = table.index[~table.index.isin(ids)]
    if len(unused) == 0:
        return ids
    if policy == "keep":
        log.info("%s: %d %s in the side file have no interactions; kept in the vocabulary", source.path,
                 len(unused), what)
        return np.concatenate([np.asarray(ids, dtype=object), unused.to_numpy(dtype=object)])
    log.warning("%s: %d %s in the side file have no interactions; left out (unused_side='keep' keeps them)",
                source.path, len(unused), what)
    return ids


def _aligned(table: pd.DataFrame, index: pd.Index, what: str, source: Source) -> pd.DataFrame:
    lacking = int((~index.isin(table.index)).sum())
    if lacking:
        log.warning("%s: %d interacting %s have no row in the side file; their side columns are empty",
                    source.path, lacking, what)
    return table.reindex(index).reset_index(drop=True)
