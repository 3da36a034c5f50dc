"""Full-ranking top-K over all items, in user batches, with excluded items masked.

Rules (the evaluation protocol depends on them, tests check them):

- Every item is a candidate except the user's excluded items (their training items, and the
  validation items when testing). Excluded cells are set to -inf before ranking and restored
  afterwards, so the scorer's array comes back unchanged.
- An item whose score is -inf is never recommended: when fewer than K items remain, the list is
  shorter and the empty slots hold -1.
- Ties are broken by the lower item id, both for which items enter the top K and for their
  order inside it (torch.topk alone does not promise either).
- A NaN score is an error (it would sort above every number).
- Sampled-negative ranking (only when asked for) restricts each user's candidates to their
  relevant items plus `n` items drawn uniformly from the items that are neither relevant nor
  excluded; the draw for a user depends only on (seed, user id), not on the batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from recsys.evaluation.pairs import UserItemSet

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]

# Bytes of working memory per score cell: the float32 scores, the scorer's own temporaries of
# the same size, and room for the boolean temporaries of tie handling.
_BYTES_PER_CELL = 12
# Bigger batches mean fewer per-batch overheads; past this they stop helping.
_MAX_BATCH = 8192


def batch_size_for(n_items: int, memory_budget_mb: float = 256.0) -> int:
    """The number of users whose scores fit in `memory_budget_mb` of working memory."""
    rows = int(memory_budget_mb * 2**20 // (max(n_items, 1) * _BYTES_PER_CELL))
    return max(1, min(rows, _MAX_BATCH))


@dataclass(frozen=True)
class Candidates:
    """Which items each user may be shown: every item but `hidden`, or, when `allowed` is set
    (sampled-negative mode), only the allowed ones that are not hidden."""

    hidden: UserItemSet
    allowed: UserItemSet | None = None


def top_k(scores: torch.Tensor, k: int, hide: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Item ids of the k best-scored items per row, best first, ties by lower item id.

    `hide` = (row positions, item ids) of cells that must not be recommended. Rows with fewer
    than k recommendable items are padded with -1. `scores` is restored before returning.
    """
    n_rows, n_items = scores.shape
    restore = _hide_cells(scores, hide) if hide is not None and len(hide[0]) else None
    try:
        values, items = _top_k_ties_by_id(scores, min(k, n_items))
    finally:
        if restore is not None:
            restore()
    items[np.isneginf(values)] = -1
    if items.shape[1] < k:
        items = np.pad(items, ((0, 0), (0, k - items.shape[1])), constant_values=-1)
    return items


def _hide_cells(scores: torch.Tensor, hide: tuple[np.ndarray, np.ndarray]) -> Callable[[], None]:
    """Set the cells to -inf in place; return the function that puts the old values back."""
    flat_index = hide[0] * scores.shape[1] + hide[1]
    if scores.device.type == "cpu":
        # numpy's take/put on a flat view are the fastest scatter/gather on CPU.
        flat = scores.numpy().reshape(-1)
        saved = np.take(flat, flat_index)
        np.put(flat, flat_index, -np.inf)
        return lambda: np.put(flat, flat_index, saved)
    flat = scores.view(-1)
    index = torch.from_numpy(flat_index).to(scores.device)
    saved = flat.index_select(0, index)
    flat.index_fill_(0, index, float("-inf"))
    return lambda: flat.index_copy_(0, index, saved)


def _top_k_ties_by_id(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, item ids) of the top k per row as numpy arrays, ordered as the module says.

    Only the selection runs in torch; the small (rows x k) follow-up work is numpy, which
    costs no thread hand-offs per operation.
    """
    n_rows, n_items = scores.shape
    if k == 0 or n_rows == 0:
        return np.zeros((n_rows, k)), np.zeros((n_rows, k), dtype=np.int64)
    # One extra column tells whether the k-th value is tied with an item left outside the top k.
    probe = min(k + 1, n_items)
    values, items = (t.cpu().numpy() for t in torch.topk(scores, probe, dim=1, largest=True, sorted=True))
    if np.isnan(values[:, 0]).any():
        raise ValueError(f"the scorer returned NaN scores (row {int(np.isnan(values[:, 0]).argmax())} of a batch)")
    crossing = np.zeros(n_rows, dtype=bool)
    if probe > k:
        kth = values[:, k - 1]
        crossing = (values[:, k] == kth) & ~np.isneginf(kth)
        values, items = values[:, :k].copy(), items[:, :k].copy()
        if crossing.any():
            rows = np.flatnonzero(crossing)
            values[rows], items[rows] = _lowest_ids_at_boundary(scores, rows, kth[rows], k)
    # Order inside the top k: by score, equal scores by item id. Rows from topk are sorted by
    # score already, so only those with equal neighbours (and the re-selected rows, which come
    # in id order) need it: sort by id, then stably by score.
    tied = np.flatnonzero((values[:, 1:] == values[:, :-1]).any(axis=1) | crossing)
    if len(tied):
        by_id = np.argsort(items[tied], axis=1, kind="stable")
        tied_items = np.take_along_axis(items[tied], by_id, axis=1)
        tied_values = np.take_along_axis(values[tied], by_id, axis=1)
        by_score = np.argsort(-tied_values, axis=1, kind="stable")
        values[tied] = np.take_along_axis(tied_values, by_score, axis=1)
        items[tied] = np.take_along_axis(tied_items, by_score, axis=1)
    return values, items.astype(np.int64, copy=False)


def _lowest_ids_at_boundary(scores: torch.Tensor, rows: np.ndarray, kth: np.ndarray,
                            k: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows whose k-th score is tied beyond position k: every item scored above the k-th
    value, then the lowest-id items scored equal to it until there are k (in id order)."""
    picked = scores[torch.from_numpy(rows).to(scores.device)]
    kth_t = torch.from_numpy(kth).to(device=scores.device, dtype=scores.dtype).unsqueeze(1)
    above = picked > kth_t
    equal = picked == kth_t
    still_needed = k - above.sum(dim=1, keepdim=True)
    chosen = above | (equal & (equal.cumsum(dim=1) <= still_needed))
    items = chosen.nonzero()[:, 1].view(len(rows), k)
    return picked.gather(1, items).cpu().numpy(), items.cpu().numpy()


def _as_scores(raw, n_users: int, n_items: int) -> torch.Tensor:
    if isinstance(raw, np.ndarray):
        if not raw.flags.writeable:
            raw = raw.copy()
        raw = torch.from_numpy(raw)
    elif not isinstance(raw, torch.Tensor):
        raise TypeError(f"a scorer must return a numpy array or torch tensor, got {type(raw).__name__}")
    if tuple(raw.shape) != (n_users, n_items):
        raise ValueError(f"the scorer returned shape {tuple(raw.shape)}, expected ({n_users}, {n_items}) "
                         "(one row per requested user, one column per item)")
    raw = raw.detach()
    if raw.dtype not in (torch.float32, torch.float64):
        raw = raw.float()
    return raw.contiguous()


def rank_users(scorer: Scorer, users: np.ndarray, k: int, candidates: Sequence[Candidates], n_items: int,
               batch_size: int, progress: bool = False) -> list[np.ndarray]:
    """Top-k item ids (len(users), k) for each entry of `candidates`, scoring each user batch once."""
    users = np.asarray(users, dtype=np.int64)
    out = [np.full((len(users), k), -1, dtype=np.int64) for _ in candidates]
    with torch.no_grad(), tqdm(total=len(users), desc="ranking", unit="user", disable=not progress) as bar:
        for start in range(0, len(users), batch_size):
            batch = users[start:start + batch_size]
            scores = _as_scores(scorer(batch), len(batch), n_items)
            for slot, candidate in zip(out, candidates):
                slot[start:start + len(batch)] = _rank_batch(scores, batch, k, candidate)
            bar.update(len(batch))
    return out


def _rank_batch(scores: torch.Tensor, batch: np.ndarray, k: int, candidate: Candidates) -> np.ndarray:
    if candidate.allowed is None:
        return top_k(scores, k, hide=candidate.hidden.cells(batch))
    rows, items = candidate.allowed.cells(batch)
    cells = (torch.from_numpy(rows).to(scores.device), torch.from_numpy(items).to(scores.device))
    restricted = torch.full_like(scores, float("-inf"))
    restricted[cells] = scores[cells]
    return top_k(restricted, k, hide=candidate.hidden.cells(batch))


def sample_candidates(users: np.ndarray, relevant: UserItemSet, hidden: UserItemSet, n_negatives: int,
                      seed: int) -> UserItemSet:
    """Each user's relevant items plus `n_negatives` items drawn uniformly without replacement
    from the items that are neither relevant nor hidden for them (fewer when not enough exist)."""
    n_items = relevant.n_items
    pair_users, pair_items, short = [], [], 0
    for user in np.asarray(users, dtype=np.int64):
        forbidden = np.union1d(relevant.items_of(user), hidden.items_of(user))
        negatives = _draw_without(forbidden, n_items, n_negatives, np.random.default_rng([seed, int(user)]))
        short += len(negatives) < n_negatives
        chosen = np.concatenate([relevant.items_of(user), negatives])
        pair_users.append(np.full(len(chosen), user, dtype=np.int64))
        pair_items.append(chosen)
    if short:
        log.warning("sampled ranking: %d users have fewer than %d items to draw negatives from; "
                    "they get every available item", short, n_negatives)
    if not pair_users:
        return UserItemSet.empty(relevant.n_users, n_items)
    return UserItemSet.from_pairs(np.concatenate(pair_users), np.concatenate(pair_items), relevant.n_users, n_items)


def _draw_without(forbidden: np.ndarray, n_items: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct item ids not in the sorted array `forbidden`, uniformly at random."""
    available = n_items - len(forbidden)
    if available <= n:
        return np.setdiff1d(np.arange(n_items), forbidden)
    if available < 2 * n:
        return rng.choice(np.setdiff1d(np.arange(n_items), forbidden), size=n, replace=False)
    # Few forbidden items: draw with replacement and keep first occurrences of allowed ids,
    # which is a uniform sample without replacement, without materializing the allowed set.
    drawn = np.zeros(0, dtype=np.int64)
    while len(drawn) < n:
        more = rng.integers(0, n_items, size=2 * n)
        more = more[~np.isin(more, forbidden)]
        drawn = np.concatenate([drawn, more])
        _, first = np.unique(drawn, return_index=True)
        drawn = drawn[np.sort(first)]
    return drawn[:n]
