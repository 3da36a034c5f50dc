"""Filters over `InteractionData`: implicit positives, de-duplication, k-core, compaction.

Each filter returns `Filtered(data, report)`: the new data and a `FilterReport` of what it
removed (rows, and users/items that lost their last row), which is also logged. Nothing is
removed silently. Filters other than `compact` keep the vocabulary, catalog and profiles as
they are (ids stay valid across filters); `compact` re-indexes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from recsys.data.interactions import Catalog, IdVocab, InteractionData, UserProfiles
from recsys.errors import UserInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterReport:
    """What one filter removed. `users`/`items`: ids that had rows before and have none after
    (for `compact`: ids removed from the vocabulary)."""

    step: str
    rows: int
    users: int
    items: int
    rows_left: int

    def __str__(self) -> str:
        return (f"{self.step}: removed {self.rows:,} rows, {self.users:,} users, {self.items:,} items "
                f"({self.rows_left:,} rows left)")


class Filtered(NamedTuple):
    data: InteractionData
    report: FilterReport


def _present(ids: np.ndarray, size: int) -> np.ndarray:
    seen = np.zeros(size, dtype=bool)
    seen[ids] = True
    return seen


def _keep(data: InteractionData, keep: np.ndarray, step: str) -> Filtered:
    """Rows where `keep` is True, reported against `data`."""
    new = data.subset(keep)
    report = FilterReport(
        step=step, rows=len(data) - len(new),
        users=int(_present(data.user, data.n_users).sum() - _present(new.user, data.n_users).sum()),
        items=int(_present(data.item, data.n_items).sum() - _present(new.item, data.n_items).sum()),
        rows_left=len(new),
    )
    log.info("%s", report)
    return Filtered(new, report)


BELOW_POLICIES = ("drop", "negative")


def binarize(data: InteractionData, threshold: float, below: str = "drop") -> Filtered:
    """Implicit positives from ratings: a row is positive when rating >= `threshold`.

    `below="drop"` removes the other rows (the result has no label: every row is a positive);
    `below="negative"` keeps them with label 0 (label 1 for the positives). Where the data
    already has labels, a row is positive only if it was positive and clears the threshold.
    The ratings stay as they were.
    """
    if data.rating is None:
        raise UserInputError("binarize needs ratings; this data has none")
    if below not in BELOW_POLICIES:
        raise UserInputError(f"binarize: below must be one of {BELOW_POLICIES}, got {below!r}")
    positive = data.rating >= threshold
    if data.label is not None:
        positive &= data.label > 0
    if below == "drop":
        return _keep(replace(data, label=None), positive, f"binarize (rating >= {threshold:g}, drop below)")
    labelled = replace(data, label=positive.astype(np.float32))
    report = FilterReport(f"binarize (rating >= {threshold:g}, below -> label 0)", 0, 0, 0, len(data))
    log.info("%s; %d of %d rows are positives", report, int(positive.sum()), len(data))
    return Filtered(labelled, report)


DEDUPLICATE_POLICIES = ("first", "last", "max_rating", "keep")


def deduplicate(data: InteractionData, policy: str = "first") -> Filtered:
    """Keep one row per (user, item) pair, by `policy`:

    - "first": the earliest row (ties in time: the one earlier in the data);
    - "last": the latest row (ties: the one later in the data);
    - "max_rating": the row with the highest rating (ties: the latest); needs ratings;
    - "keep": keep every row (repeat interactions are kept; splits keep a pair's rows together).

    Kept rows stay in their original order.
    """
    if policy not in DEDUPLICATE_POLICIES:
        raise UserInputError(f"deduplicate: policy must be one of {DEDUPLICATE_POLICIES}, got {policy!r}")
    if policy == "keep":
        return _keep(data, np.ones(len(data), dtype=bool), "deduplicate (keep)")
    if policy == "max_rating" and data.rating is None:
        raise UserInputError("deduplicate: policy 'max_rating' needs ratings; this data has none")
    rows = np.arange(len(data), dtype=np.int64)
    key = data.user * np.int64(max(1, data.n_items)) + data.item
    # Sort so the row to keep comes LAST within its pair, then keep each pair's last row.
    if policy == "first":
        order = np.lexsort((-rows, -data.timestamp, key))
    elif policy == "last":
        order = np.lexsort((rows, data.timestamp, key))
    else:
        order = np.lexsort((rows, data.timestamp, data.rating, key))
    sorted_key = key[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = sorted_key[:-1] != sorted_key[1:]
    keep = np.zeros(len(data), dtype=bool)
    keep[order[last]] = True
    return _keep(data, keep, f"deduplicate ({policy})")


def kcore(data: InteractionData, user_k: int, item_k: int) -> Filtered:
    """Iteratively remove users with fewer than `user_k` and items with fewer than `item_k` positive
    rows until every remaining user and item has enough (the largest such sub-data: a fixed point).

    Counts are of positive rows (every row when there is no label), so run `deduplicate` first
    to count distinct items. A removed user or item loses all of its rows, negatives included.
    """
    if user_k < 0 or item_k < 0:
        raise UserInputError(f"kcore: k must be >= 0, got user_k={user_k}, item_k={item_k}")
    positive = np.ones(len(data), dtype=bool) if data.label is None else data.label > 0
    keep = np.ones(len(data), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        counted = keep & positive
        user_count = np.bincount(data.user[counted], minlength=data.n_users)
        item_count = np.bincount(data.item[counted], minlength=data.n_items)
        drop = keep & ((user_count[data.user] < user_k) | (item_count[data.item] < item_k))
        if not drop.any():
            break
        keep &= ~drop
    return _keep(data, keep, f"kcore (user_k={user_k}, item_k={item_k}, {rounds} rounds)")


_kcore = kcore  # `apply` takes a parameter named kcore


def compact(data: InteractionData) -> Filtered:
    """Drop users and items with no rows; re-index ids (old order kept), vocabulary, catalog and profiles."""
    users = np.flatnonzero(_present(data.user, data.n_users))
    items = np.flatnonzero(_present(data.item, data.n_items))
    new_user = np.full(data.n_users, -1, dtype=np.int64)
    new_user[users] = np.arange(len(users))
    new_item = np.full(data.n_items, -1, dtype=np.int64)
    new_item[items] = np.arange(len(items))
    catalog = None if data.catalog is None else Catalog(data.catalog.frame.iloc[items])
    profiles = None if data.profiles is None else UserProfiles(data.profiles.traits[users],
                                                               _rows(data.profiles.demographics, users))
    new = replace(data, user=new_user[data.user], item=new_item[data.item],
                  vocab=IdVocab(data.vocab.users[users], data.vocab.items[items]),
                  catalog=catalog, profiles=profiles)
    report = FilterReport("compact", 0, data.n_users - len(users), data.n_items - len(items), len(new))
    log.info("%s from the vocabulary", report)
    return Filtered(new, report)


def _rows(frame, rows: np.ndarray):
    # Demographics may be an empty frame with no rows at all (no demographic columns).
    return frame.iloc[rows] if len(frame) else frame


def apply(data: InteractionData, rating_threshold: float | None = None, dedup: str | None = None,
          kcore: int = 0, below: str = "drop", reports: list[FilterReport] | None = None) -> InteractionData:
    """The configured filters in their fixed order: `binarize` (when `rating_threshold` is set),
    `deduplicate` (when `dedup` names a policy), then `kcore` with k for users and items (when > 0).

    Each step logs what it removed; pass a list as `reports` to collect the `FilterReport`s too.
    The vocabulary is kept (run `compact` to re-index).
    """
    steps = []
    if rating_threshold is not None:
        steps.append(lambda d: binarize(d, rating_threshold, below=below))
    if dedup is not None:
        steps.append(lambda d: deduplicate(d, dedup))
    if kcore:
        steps.append(lambda d: _kcore(d, kcore, kcore))
    for step in steps:
        data, report = step(data)
        if reports is not None:
            reports.append(report)
    return data

