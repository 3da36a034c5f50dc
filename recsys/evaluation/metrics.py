"""Ranking metrics as small pure functions, vectorized over users.

Accuracy metrics take `hits`, a boolean matrix with one row per user and one column per
list position (hits[u, j] is True when the item at rank j+1 of user u's list is relevant), and
`n_relevant`, the size of each user's relevant set. They return one float64 value per user;
the reported number is the mean over users. Lists shorter than K (a user with fewer than K
recommendable items, or an outside list that stops early) are padded with non-hits.

Definitions at cut-off K, with rel_j = hits[u, j] and R = n_relevant[u] (>= 1):

- recall@K     = sum_{j<K} rel_j / R
- precision@K  = sum_{j<K} rel_j / K            (K, not the list length, as in RecBole)
- f1@K         = 2 P R' / (P + R') per user, 0 when both are 0 (then averaged over users)
- ndcg@K       = DCG / IDCG, DCG = sum_{j<K} rel_j / log2(j + 2),
                 IDCG = sum_{j < min(R, K)} 1 / log2(j + 2)   (binary relevance)
- mrr@K        = 1 / (rank of the first hit), 0 when no hit in the top K
- hit_rate@K   = 1 if any hit in the top K else 0
- map@K        = sum_{j<K} rel_j * precision@(j+1) / min(R, K)   (RecBole's normalizer: a
                 user with more than K relevant items can still reach 1)

A user with R = 0 gets 0 from every function (the evaluator never passes one: it skips them).

Beyond accuracy (from the recommended items alone, `top_items` with -1 for an empty slot):

- coverage@K        = distinct items in anyone's top K / number of catalog items
- avg_popularity@K  = per user, the mean popularity (training interaction count) of the items in
                      the top K; the reported number is the mean over users
- gini@K            = Gini index of item exposure (how many top-K lists contain each catalog
                      item, zeros included): sum_i (2i - n - 1) x_(i) / (n sum x) over counts
                      sorted ascending; 0 when every item is shown equally often
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_LOG2_RANK = np.log2(np.arange(2, 10_002, dtype=np.float64))


def _discounts(k: int) -> np.ndarray:
    """1 / log2(j + 2) for the positions j < k."""
    if k <= len(_LOG2_RANK):
        return 1.0 / _LOG2_RANK[:k]
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _top(hits: np.ndarray, k: int) -> np.ndarray:
    """The first k columns of `hits` as float64, padded with non-hits when the lists are shorter."""
    hits = np.asarray(hits, dtype=bool)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if hits.shape[1] < k:
        hits = np.pad(hits, ((0, 0), (0, k - hits.shape[1])))
    return hits[:, :k].astype(np.float64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64),
                     where=denominator > 0)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _safe_divide(_top(hits, k).sum(axis=1), n_relevant)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _top(hits, k).sum(axis=1) / k


def f1(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    p, r = precision(hits, n_relevant, k), recall(hits, n_relevant, k)
    return _safe_divide(2 * p * r, p + r)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    discounts = _discounts(k)
    dcg = _top(hits, k) @ discounts
    ideal_cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cumulative[np.minimum(np.asarray(n_relevant, dtype=np.int64), k)]
    return _safe_divide(dcg, idcg)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    top = _top(hits, k)
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _top(hits, k).any(axis=1).astype(np.float64)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k per user; its mean over users is MAP@k. Normalized by min(n_relevant, k)."""
    top = _top(hits, k)
    precision_at_each = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return _safe_divide((top * precision_at_each).sum(axis=1),
                        np.minimum(np.asarray(n_relevant, dtype=np.int64), k))


# name used in metric keys -> function(hits, n_relevant, k) -> per-user values
ACCURACY_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "recall": recall,
    "precision": precision,
    "f1": f1,
    "ndcg": ndcg,
    "mrr": mrr,
    "hit_rate": hit_rate,
    "map": average_precision,
}


def _cut(top_items: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(top_items, dtype=np.int64)[:, :k]


def exposure_counts(top_items: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """How many users' top-k lists contain each catalog item (empty slots, -1, ignored)."""
    items = _cut(top_items, k)
    return np.bincount(items[items >= 0], minlength=n_items)[:n_items]


def item_coverage(top_items: np.ndarray, n_items: int, k: int) -> float:
    return float(np.count_nonzero(exposure_counts(top_items, n_items, k)) / n_items) if n_items else 0.0


def average_popularity(top_items: np.ndarray, popularity: np.ndarray, k: int) -> np.ndarray:
    """Per user: mean popularity of the items in the top k (empty slots do not count; 0 for an empty list)."""
    items = _cut(top_items, k)
    filled = items >= 0
    values = np.where(filled, np.asarray(popularity, dtype=np.float64)[np.where(filled, items, 0)], 0.0)
    return _safe_divide(values.sum(axis=1), filled.sum(axis=1))


def gini_index(values: np.ndarray) -> float:
    """Gini index of non-negative values: 0 when all are equal, (n-1)/n when one holds everything."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def gini_exposure(top_items: np.ndarray, n_items: int, k: int) -> float:
    return gini_index(exposure_counts(top_items, n_items, k))
