"""Trials of the autograd engine's BPR on MovieLens-100k (RecBole's protocol), scored on VALIDATION only.

    python -m bench.trials_bpr_ml100k_autograd [--data PATH] [--quick]

(about 10 minutes of CPU; --quick: one trial of 5 epochs that writes nothing)

Each trial trains `ImplicitRecommender.loss` (TorchRec tables) with Adam on shuffled batches of
training positives and uniform negatives, one torch thread, outside Lightning, and scores
valid/ndcg@10 every 5 epochs. The trials (batch size, learning rate, L2, init, negatives) and their
curves go to bench/results/bpr_ml100k_autograd_trials.json; the test split is never read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import write_result
from bench.select_bpr_ml100k import DEFAULT_DATA, _data

TRIALS = [  # batch, lr, l2, init_std, epochs, negatives
    (16384, 0.01, 0.0, 0.04, 60, 1), (16384, 0.02, 0.0, 0.04, 60, 1), (8192, 0.005, 0.0, 0.04, 60, 1),
    (16384, 0.01, 0.01, 0.04, 60, 1), (16384, 0.01, 0.03, 0.04, 100, 1), (16384, 0.01, 0.01, 0.04, 100, 4),
    (8192, 0.01, 0.02, 0.04, 100, 4),
]


def trial(data, batch: int, lr: float, l2: float, init_std: float, epochs: int, negatives: int, seed: int = 0,
          every: int = 5) -> dict:
    import torch

    from recsys.evaluation import evaluate
    from recsys.models.implicit import ImplicitRecommender

    torch.set_num_threads(1)
    split, train = data.split, data.split.train
    torch.manual_seed(seed)
    module = ImplicitRecommender(train.n_users, train.n_items, objective="bpr", embedding_dim=64, init_std=init_std,
                                 l2=l2, engine="autograd", lr=lr)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    U = module.preference.user_weight.detach().numpy()  # views: Adam steps the tables in place
    V = module.preference.item_weight.detach().numpy()
    curve, started = [], time.process_time()
    for epoch in range(epochs):
        order = rng.permutation(len(train))
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            users = train.user[rows]
            sampled = data.sampler.sample(users, negatives, rng)
            loss = module.loss(torch.from_numpy(users), torch.from_numpy(train.item[rows]),
                               torch.from_numpy(sampled))["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % every == 0:
            result = evaluate(lambda u: U[u] @ V.T, {"valid": split.valid}, exclude=[split.train], ks=(10,))
            curve.append(round(result.metrics["valid/ndcg@10"], 4))
    best = int(np.argmax(curve))
    return {"batch": batch, "lr": lr, "l2": l2, "init_std": init_std, "epochs": epochs, "negatives": negatives,
            "best_valid_ndcg@10": curve[best], "best_epoch": (best + 1) * every, "cpu_seconds": time.process_time() - started,
            "curve_every_5": curve}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RecBole's ml-100k.inter")
    parser.add_argument("--quick", action="store_true", help="the first trial for 5 epochs (a smoke run; writes no result)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"error: {args.data} is not a file (RecBole's ml-100k atomic file)")
    data = _data(args.data)
    trials = []
    for spec in TRIALS[:1] if args.quick else TRIALS:
        if args.quick:
            spec = (*spec[:4], 5, spec[5])
        trials.append(trial(data, *spec))
        print(trials[-1], flush=True)
    if args.quick:
        return
    write_result("bpr_ml100k_autograd_trials", {
        "trials": trials, "selection": "best valid/ndcg@10 (seed 0); test never read",
        "note": "one torch thread, outside Lightning, on the shared 2-core machine under load; CPU seconds"})


if __name__ == "__main__":
    main()
