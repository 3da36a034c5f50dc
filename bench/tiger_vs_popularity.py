"""TIGER against popularity on the discern world's leave-last-out queries (axis 1, the same split and exclusions).

    python -m bench.tiger_vs_popularity [discern options, e.g. --data.world '{n_users: 300, n_items: 150}'
                                         --train.max_epochs 8 --seed 1] [--popularity-only]

TIGER is trained as `python -m recsys discern -c configs/recsys/tiger.yaml` trains it, with semantic IDs from an
RQ-VAE over SVD factors of the training interactions (the discern fallback; no text encoder needed). Popularity
ranks items by their count in the training part of every sequence (all but the last two items), which is what
TIGER trains on. Both exclude the items the user saw before the target. Prints one JSON line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recsys.experiments.discern import (
    DiscernConfig,
    _parser,
    score,
    svd_item_vectors,
    train_rqvae,
    train_variant,
    world_data,
)
from recsys.models.generative_data import leave_last_out


def seen_before(sequences, examples) -> list[np.ndarray]:
    return [np.asarray(sequences[u][:s]) for u, s in zip(examples.user.tolist(), examples.step.tolist())]


def popularity_lists(sequences, n_items: int, exclude: list[np.ndarray], k: int) -> np.ndarray:
    counts = np.bincount(np.concatenate([s[:-2] for s in sequences]), minlength=n_items)
    order = np.argsort(-counts, kind="stable")
    return np.stack([order[~np.isin(order, seen)][:k] for seen in exclude]) if exclude else np.zeros((0, k), int)


def main(argv: list[str]) -> dict:
    popularity_only = "--popularity-only" in argv
    argv = [a for a in argv if a != "--popularity-only"]
    parser = _parser()
    namespace = parser.parse_args(["-c", "configs/recsys/tiger.yaml", "--out", "artifacts/tiger_vs_popularity",
                                   "--train.progress", "false", *argv])
    built = parser.instantiate(namespace)
    config = DiscernConfig(**{k: getattr(built, k) for k in DiscernConfig.__dataclass_fields__})
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    data = world_data(config.data, config.seed)
    n_items = len(data.item_ids)
    split = leave_last_out(data.sequences, config.model.max_history)
    ks = [5, 10]
    result: dict = {"users": len(data.user_ids), "items": n_items, "seed": config.seed}
    model = None
    if not popularity_only:
        vectors = svd_item_vectors([s[:-2] for s in data.sequences], n_items, seed=config.seed)
        r = config.rqvae
        _, ids, _ = train_rqvae(vectors, max_epochs=r.max_epochs, batch_size=r.batch_size, seed=config.seed,
                                progress=False, accelerator="cpu", codebook_size=r.codebook_size, n_levels=r.n_levels,
                                latent_dim=r.latent_dim, hidden_dims=r.hidden_dims, commitment=r.commitment, lr=r.lr)
        config.train.reuse_checkpoints = False
        model = train_variant("tiger", data, split, ids, None, None, None, config,
                              Path(namespace.out) / f"seed{config.seed}").eval()
        result["max_epochs"] = config.train.max_epochs
    for part in ("valid", "test"):
        examples = getattr(split, part)
        exclude = seen_before(data.sequences, examples)
        result[f"popularity_{part}"] = score(popularity_lists(data.sequences, n_items, exclude, max(ks)),
                                             examples.target, ks)[0]
        if model is not None:
            items, _ = model.recommend(examples.history, None, None, k=max(ks), beam_size=config.eval.beam_size,
                                       exclude=exclude)
            result[f"tiger_{part}"] = score(items, examples.target, ks)[0]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
