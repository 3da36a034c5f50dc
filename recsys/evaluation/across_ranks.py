"""Evaluation split over the processes of a multi-process run.

Each user is ranked on exactly one rank and the top-K lists are all-gathered
(`evaluate_across_ranks`), so the metrics equal a single process's for the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from recsys.data.ranks import all_gather_rows, rank_and_world


def rank_share_and_gather(scorer: Callable[[np.ndarray], Any], users: np.ndarray, k: int, candidates, n_items: int,
                          batch_size: int, progress: bool = False) -> list[np.ndarray]:
    """`rank_users` with each user ranked on one process only, the top-K lists all-gathered.

    `users` is the same sorted array on every process; each ranks its contiguous share (the last
    share padded with a repeated user, so every process calls the scorer equally often: sharded
    lookups are collective), and the shares are concatenated in rank order on every process.
    """
    from recsys.evaluation.ranking import rank_users

    rank, world = rank_and_world()
    per_rank = -(-len(users) // world)
    mine = users[rank * per_rank:(rank + 1) * per_rank]
    real = len(mine)
    if real < per_rank:
        mine = np.concatenate([mine, np.full(per_rank - real, users[-1], dtype=users.dtype)])
    ranked = rank_users(scorer, mine, k, candidates, n_items, batch_size, progress and rank == 0)
    return [np.concatenate(all_gather_rows(top[:real])) for top in ranked]


def evaluate_across_ranks(scorer: Callable[[np.ndarray], Any], truth, exclude, ks):
    """`recsys.evaluation.evaluate` (full ranking) split over the processes; every process gets the
    metrics from the same gathered lists, so they equal a single process's exactly."""
    from recsys.evaluation import evaluate

    result = evaluate(scorer, truth, exclude, ks, rank=rank_share_and_gather)
    result.protocol["processes"] = rank_and_world()[1]
    return result
