"""Hyper-parameters of configs/recsys/bpr_movielens.yaml, chosen on MovieLens-100k's VALIDATION split only.

    python -m bench.select_bpr_ml100k [--data ../shared/data/ml-100k/ml-100k.inter] [--seeds 0,1] [--quick]

(about 25 minutes on the loaded 2-core machine; --quick: a smoke run of a minute that writes nothing)

RecBole's protocol, as the config loads it: every rating a positive, per-user random 0.8/0.1/0.1
split (data.seed 0), full ranking with training items masked. Each candidate trains the compiled
engine's BPR (the `ImplicitRecommender` tables and initialization, the kernel's default stratified
schedule, the CLI's per-epoch seeds and learning-rate schedules) and is scored by valid/ndcg@10 (the
config's monitor) every epoch. A candidate's score is the mean over seeds of its best validation
epoch's ndcg@10; the test split is never read here.

The search is coordinate-wise, each stage starting from the best so far: (1) learning rate x L2,
(2) learning-rate schedule x epochs, (3) negatives per positive, (4) initialization scale. Every
candidate, its per-seed curve summary and the choice go to bench/results/bpr_ml100k_selection.json.
Run on the shared 2-core machine under load: the timings in the JSON are indicative only.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import numpy as np

from bench.common import write_result

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ml-100k" / "ml-100k.inter"
START = {"lr": 0.05, "l2": 0.03, "schedule": "none", "epochs": 100, "negatives": 1, "init_std": 0.1}


def _data(path: Path):
    from recsys.data.datamodule import InteractionDataModule

    return InteractionDataModule(path=str(path), format="recbole", rating_threshold=None, kcore=0, split="random",
                                 ratios=(0.8, 0.1, 0.1), seed=0)


def _lr_at(params: dict, epoch: int) -> float:
    """The learning rate of an epoch under the config's schedule (CosineAnnealingLR with T_max = epochs)."""
    if params["schedule"] == "cosine":
        return params["lr"] * 0.5 * (1.0 + math.cos(math.pi * epoch / params["epochs"]))
    return params["lr"]


def train_and_validate(data, params: dict, seed: int) -> dict:
    """One run: the valid/ndcg@10 curve (every epoch) of BPR with `params`; never looks at the test split."""
    import torch

    from recsys.evaluation import evaluate
    from recsys.models.compiled_sgd import CompiledSGD
    from recsys.models.implicit import ImplicitRecommender

    split = data.split
    train = split.train
    torch.manual_seed(seed)
    module = ImplicitRecommender(train.n_users, train.n_items, objective="bpr", embedding_dim=64,
                                 init_std=params["init_std"], l2=params["l2"], engine="compiled", lr=params["lr"])
    U, V = module.preference.user_weight, module.preference.item_weight
    indptr, indices = data.train_csr()
    kernel = CompiledSGD(train.user, train.item, indptr, indices, train.n_items, objective="bpr", lr=params["lr"],
                         reg=params["l2"], n_neg=params["negatives"])
    Un, Vn = U.detach().numpy(), V.detach().numpy()  # views: they follow the kernel's in-place updates
    curve, started = [], time.perf_counter()
    for epoch in range(params["epochs"]):
        kernel.epoch(U, V, seed=(seed * 1_000_003 + epoch) % 2**62, lr=_lr_at(params, epoch))
        result = evaluate(lambda users: Un[users] @ Vn.T, {"valid": split.valid}, exclude=[split.train], ks=(10,))
        curve.append(result.metrics["valid/ndcg@10"])
    best = int(np.argmax(curve))
    return {"best_epoch": best, "best": float(curve[best]), "last": float(curve[-1]),
            "curve_every_5": [round(float(v), 5) for v in curve[4::5]], "seconds": time.perf_counter() - started}


def score(data, params: dict, seeds: list[int], log: list) -> float:
    runs = {str(s): train_and_validate(data, params, s) for s in seeds}
    value = float(np.mean([r["best"] for r in runs.values()]))
    log.append({"params": dict(params), "valid_ndcg@10": value, "runs": runs})
    print(f"{params} -> valid ndcg@10 {value:.4f} (best epochs {[r['best_epoch'] for r in runs.values()]})",
          flush=True)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RecBole's ml-100k.inter")
    parser.add_argument("--seeds", default="0,1", help="seeds each candidate is averaged over")
    parser.add_argument("--quick", action="store_true",
                        help="a two-point grid per stage of 5-10 epochs (a smoke run; writes no result)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"error: {args.data} is not a file (RecBole's ml-100k atomic file)")
    seeds = [int(s) for s in args.seeds.split(",")]
    data = _data(args.data)
    stages = {
        "lr_x_l2": {"lr": [0.02, 0.05, 0.1], "l2": [0.01, 0.02, 0.03, 0.05]},
        "schedule_x_epochs": {"schedule": ["none", "cosine"], "epochs": [50, 100, 200]},
        "negatives": {"negatives": [1, 2, 4]},
        "init_std": {"init_std": [0.01, 0.1]},
    }
    if args.quick:
        stages = {name: {k: v[:2] for k, v in grid.items()} for name, grid in stages.items()}
        START["epochs"] = 10
        stages["schedule_x_epochs"]["epochs"] = [5, 10]
    best, log, chosen_by_stage = dict(START), [], {}
    started = time.perf_counter()
    for name, grid in stages.items():
        candidates = []
        for values in itertools.product(*grid.values()):
            params = {**best, **dict(zip(grid, values))}
            candidates.append((score(data, params, seeds, log), params))
        value, best = max(candidates, key=lambda c: c[0])
        chosen_by_stage[name] = {"params": dict(best), "valid_ndcg@10": value}
        print(f"stage {name}: {best} (valid ndcg@10 {value:.4f})", flush=True)
    if args.quick:
        return
    write_result("bpr_ml100k_selection", {
        "data": str(args.data.name), "protocol": "RecBole's: every rating a positive, per-user random 0.8/0.1/0.1 "
        "(seed 0), full ranking, training items masked; 64-d BPR, compiled engine",
        "selection": "mean over seeds of the best epoch's valid/ndcg@10; test split never read",
        "seeds": seeds, "start": START, "stages": {k: {p: list(v) for p, v in g.items()} for k, g in stages.items()},
        "chosen_by_stage": chosen_by_stage, "chosen": best, "candidates": log,
        "wall_seconds": time.perf_counter() - started,
        "note": "shared 2-core machine under load from other work; seconds are indicative only"})


if __name__ == "__main__":
    main()
