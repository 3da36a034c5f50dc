"""Recommendation lists from outside systems: a frame (user, item, rank | score) -> ranked item ids.

The rows are checked before they are trusted: a missing column, a rank that is not a
non-negative integer, a score that is not a finite number, a user with the same rank twice or
the same item twice are errors that name the row (or file line) and the column.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import pandas as pd

from recsys.data.interactions import IdVocab
from recsys.errors import UserInputError

log = logging.getLogger(__name__)


class RowErrors(Protocol):
    """Something that turns (message, frame row, column) into an error naming where it is."""

    def error(self, message: str, row: int | None = None, field: str | None = None) -> Exception: ...


class FrameRows:
    """Errors for a DataFrame passed in directly: rows are named by their position."""

    def __init__(self, name: str = "recs"):
        self.name = name

    def error(self, message: str, row: int | None = None, field: str | None = None) -> Exception:
        where = self.name + (f" row {row}" if row is not None else "") + (f", field '{field}'" if field else "")
        return UserInputError(f"{where}: {message}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _ordering_key(frame: pd.DataFrame, where: RowErrors) -> tuple[np.ndarray, str]:
    """The sort key (ascending = better) from the rank column, else from the score column."""
    if "rank" in frame.columns:
        if "score" in frame.columns:
            log.info("recommendation lists have both rank and score; ordering by rank")
        ranks = pd.to_numeric(frame["rank"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(ranks) | (ranks < 0) | (ranks != np.floor(ranks))
        if bad.any():
            row = _first(bad)
            raise where.error(f"rank must be a non-negative integer, got '{frame['rank'].iloc[row]}'",
                              row=row, field="rank")
        return ranks, "rank"
    if "score" in frame.columns:
        scores = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(scores)
        if bad.any():
            row = _first(bad)
            raise where.error(f"score must be a finite number, got '{frame['score'].iloc[row]}'",
                              row=row, field="score")
        return -scores, "score"
    have = ", ".join(map(str, frame.columns))
    raise where.error(f"needs a 'rank' or a 'score' column (columns present: {have})", field="rank")


def _first_duplicate(*columns: np.ndarray) -> int | None:
    """Row of the first repeat of an earlier row's values in `columns`, in file order."""
    duplicated = pd.DataFrame(dict(enumerate(columns))).duplicated().to_numpy()
    return _first(duplicated) if duplicated.any() else None


def lists_from_frame(frame: pd.DataFrame, vocab: IdVocab, where: RowErrors | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Internal user ids (sorted) and their ranked item ids (one row per user, -1 padded).

    Rows are ordered by rank (ascending) or, without a rank column, by score (descending), equal
    scores by the lower internal item id, as in full ranking. Users the vocabulary does not know
    cannot be evaluated and are left out (counted in the log); an unknown item is an error.
    """
    where = where or FrameRows()
    for column in ("user", "item"):
        if column not in frame.columns:
            have = ", ".join(map(str, frame.columns))
            raise where.error(f"missing column '{column}' (columns present: {have})", field=column)
    for column in ("user", "item"):
        empty = frame[column].isna().to_numpy() | frame[column].astype(str).str.strip().eq("").to_numpy()
        if empty.any():
            raise where.error("empty id", row=_first(empty), field=column)
    order_key, order_field = _ordering_key(frame, where)
    user_ids = frame["user"].astype(str).str.strip().to_numpy()
    users = vocab.encode_users(user_ids)
    items = vocab.encode_items(frame["item"].astype(str).str.strip())
    if (items < 0).any():
        row = _first(items < 0)
        raise where.error(f"item '{frame['item'].iloc[row]}' is not in the vocabulary of the truth "
                          "(build one IdVocab over the lists, the truth and the training data)", row=row, field="item")
    duplicate = _first_duplicate(user_ids, items)
    if duplicate is not None:
        raise where.error(f"user '{frame['user'].iloc[duplicate]}' lists item '{frame['item'].iloc[duplicate]}' "
                          "twice", row=duplicate, field="item")
    if order_field == "rank":
        duplicate = _first_duplicate(user_ids, order_key)
        if duplicate is not None:
            raise where.error(f"user '{frame['user'].iloc[duplicate]}' has rank "
                              f"{frame['rank'].iloc[duplicate]} twice", row=duplicate, field="rank")
    unknown = users < 0
    if unknown.any():
        log.warning("recommendation lists: %d rows of %d users not in the truth's vocabulary are left out",
                    int(unknown.sum()), pd.unique(frame["user"][unknown]).size)
        users, items, order_key = users[~unknown], items[~unknown], order_key[~unknown]
    order = np.lexsort((items, order_key, users))
    users, items = users[order], items[order]
    list_users, starts, lengths = np.unique(users, return_index=True, return_counts=True)
    top = np.full((len(list_users), int(lengths.max(initial=0))), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(list_users)), lengths)
    top[rows, np.arange(len(users)) - np.repeat(starts, lengths)] = items
    return list_users, top
