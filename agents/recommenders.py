"""Recommenders as the simulator's `Recommender`: a recommender checkpoint or a serving bundle.

`prefengine/RecSim-v0` (`agents.envs.recsim`) takes any `Recommender`, scores of every item for a
batch of its users; this module makes one from a checkpoint of `python -m recsys fit` (its
`score_users`, through the exporter's checkpoint reader) or from a bundle of `python -m recsys export`
(read with the serving package's own reader), and turns it into a slate policy. It sits beside
`agents.simulate`, which runs such a policy, so the environment imports neither layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.envs.recsim import Recommender, scorer_policy
from recsys.errors import UserInputError


def mapped_scorer(user_ids, item_ids, n_items: int, score_rows: Callable[[np.ndarray], np.ndarray],
                  fallback: np.ndarray) -> Recommender:
    """A scorer over the simulator's users and items from a model with its own id lists.

    World ids are the decimal strings of the internal ids, so users and items are matched by those
    outside ids. A user the model does not know gets the `fallback` item scores (popularity); items
    it does not know score -inf and are never shown.
    """
    rows_of = {str(u): k for k, u in enumerate(user_ids)}
    columns = np.array([int(i) if str(i).isdigit() and int(i) < n_items else -1 for i in item_ids])
    known = columns >= 0
    fallback = np.asarray(fallback, dtype=np.float64)[known]

    def scores(users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), n_items), -np.inf)
        rows = np.array([rows_of.get(str(int(u)), -1) for u in users])
        have = rows >= 0
        if have.any():
            out[np.ix_(have, columns[known])] = np.asarray(score_rows(rows[have]), dtype=np.float64)[:, known]
        if (~have).any():
            out[np.ix_(~have, columns[known])] = fallback
        return out

    return scores


def bundle_scorer(bundle_dir: str | Path, n_items: int) -> Recommender:
    """Scores of a serving bundle (`python -m recsys export`), read with the serving package's own reader."""
    from bundleformat.manifest import BundleError
    from serving.retrieval import Retriever

    try:
        retriever = Retriever.load(bundle_dir)
    except BundleError as error:
        raise UserInputError(str(error)) from None
    data = retriever.data
    item_vectors = np.asarray(data.item_vectors, dtype=np.float32)
    return mapped_scorer(data.user_ids, data.item_ids, n_items,
                         lambda rows: retriever.user_vectors(rows) @ item_vectors.T, data.item_popularity)


def recommender_scorer(checkpoint: str | Path, n_items: int) -> Recommender:
    """Scores of a recommender checkpoint (`python -m recsys fit`): its `score_users` over its vocabulary."""
    import torch

    from recsys.export.embeddings import load_recommender

    model, block = load_recommender(checkpoint)
    popularity = block.get("item_popularity") or np.zeros(len(block["vocab_items"]))

    def score_rows(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.score_users(torch.as_tensor(rows, dtype=torch.long)).float().cpu().numpy()

    return mapped_scorer(block["vocab_users"], block["vocab_items"], n_items, score_rows, popularity)


def slate_shape(env_id: str, env_kwargs: dict | None) -> tuple[int, int]:
    """(slate size, number of items) of a slate environment."""
    import agents.envs  # noqa: F401

    probe = gym.make(env_id, **(env_kwargs or {}))
    action_space = probe.action_space
    probe.close()
    if not isinstance(action_space, spaces.MultiDiscrete) or len(set(action_space.nvec.tolist())) != 1:
        raise UserInputError(f"{env_id}: a recommender can only act where the action is a slate of items")
    return len(action_space.nvec), int(action_space.nvec[0])


def recommender_policy(source: str | Path, env_id: str, env_kwargs: dict | None = None):
    """The slate policy of a serving bundle directory or a recommender checkpoint in a slate env."""
    slate_size, n_items = slate_shape(env_id, env_kwargs)
    scorer = bundle_scorer(source, n_items) if Path(source).is_dir() else recommender_scorer(source, n_items)
    return scorer_policy(scorer, slate_size)
