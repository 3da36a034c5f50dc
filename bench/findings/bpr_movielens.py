"""BPR on MovieLens-1M-shaped files (the world's ml-1m preset written as ratings.dat / movies.dat and read back
by the MovieLens loader), RecBole-like protocol: BPR learns well beyond popularity, over seeds 0, 1, 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.findings.core import mean_sd

NAME = "bpr_movielens"
TITLE = "BPR on MovieLens-shaped files (RecBole-like protocol)"
COMMAND = ("python -m recsys.data.world_movielens --out artifacts/findings/bpr_movielens/ml1m-world && "
           "python -m recsys fit -c configs/recsys/bpr_movielens.yaml "
           "--data.path artifacts/findings/bpr_movielens/ml1m-world/ratings.dat --seeds 0,1,2 "
           "--trainer.default_root_dir artifacts/findings/bpr_movielens/bpr && "
           "python -m recsys fit -c configs/recsys/popularity.yaml "
           "--data.path artifacts/findings/bpr_movielens/ml1m-world/ratings.dat --data.format movielens "
           "--model.init_args.eval_ks '[10, 20]' --trainer.default_root_dir artifacts/findings/bpr_movielens/popularity")
SHORT_COMMAND = ("`python -m recsys fit -c configs/recsys/bpr_movielens.yaml --seeds 0,1,2` and `popularity.yaml` on the files "
                 "`python -m recsys.data.world_movielens` writes")
# One seed: 154 s wall in all (world about 10 s, BPR 200 epochs). Three seeds of BPR: 408 s of CPU,
# 22 min wall at load average 9-11.
FULL_MINUTES = 10
SEEDS = "0,1,2"
RULE = ("BPR's test NDCG@10 and Recall@10 are above popularity's in every seed (0, 1, 2: initialization and "
        "sampling; the split fixed) and on their mean")
QUICK_CHECK = ("direction: BPR's test NDCG@10 and Recall@10 are above popularity's (the 200 x 150 toy world "
               "written as MovieLens files, at most 20 epochs, seed 0 only)")
METRICS = ("recall@10", "ndcg@10", "mrr@10", "hit_rate@10", "precision@10", "recall@20", "ndcg@20")


def _fit(argv: list[str], root: Path) -> dict[str, Any]:
    import shutil

    from recsys.training.train import main

    shutil.rmtree(root, ignore_errors=True)  # one run, one best checkpoint: never an older run's
    assert main(["fit", *argv, "--trainer.default_root_dir", str(root)]) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    best = sorted((root / "checkpoints").glob("best-epoch=*.ckpt"))
    epoch = int(re.search(r"epoch=(\d+)", best[-1].name).group(1)) if best else None
    return {"test": {m: metrics[f"test/{m}"] for m in METRICS}, "valid_ndcg@10": metrics.get("valid/ndcg@10"),
            "best_epoch": epoch}


def _fit_seeds(argv: list[str], root: Path) -> dict[str, Any]:
    """`fit --seeds`: mean, sd and per-seed values of each test metric, and every seed's best epoch."""
    import shutil

    from recsys.training.train import main

    shutil.rmtree(root, ignore_errors=True)
    assert main(["fit", *argv, "--trainer.default_root_dir", str(root)]) == 0
    summary = json.loads((root / "metrics.json").read_text())
    sd = summary["sd"] if len(summary["seeds"]) > 1 else {}
    return {"seeds": summary["seeds"],
            "test": {m: {"mean": summary[f"test/{m}"], "sd": sd.get(f"test/{m}"),
                         "per_seed": summary["per_seed"][f"test/{m}"]} for m in METRICS},
            "valid_ndcg@10": {"mean": summary["valid/ndcg@10"], "sd": sd.get("valid/ndcg@10"),
                              "per_seed": summary["per_seed"]["valid/ndcg@10"]},
            "best_epoch": summary.get("selection", {}).get("best_epoch")}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    files = workdir / "ml1m-world"
    if quick:
        from recsys.data.world import WorldConfig, generate_world
        from recsys.data.world_movielens import write_movielens

        ratings = write_movielens(generate_world(WorldConfig.toy(false_positive_rate=0.1, seed=0)).observed, files)
    else:
        from recsys.data.world_movielens import main as write_world

        assert write_world(["--out", str(files)]) == 0
        ratings = files / "ratings.dat"
    bpr_argv = ["-c", "configs/recsys/bpr_movielens.yaml", "--data.path", str(ratings), "--seeds",
                "0" if quick else SEEDS]
    popularity_argv = ["-c", "configs/recsys/popularity.yaml", "--data.path", str(ratings), "--data.format",
                       "movielens", "--model.init_args.eval_ks", "[10, 20]"]
    if quick:
        bpr_argv += ["--trainer.max_epochs", "20"]
    # popularity has no seed: its counts and the split are fixed, so one run is every run
    numbers = {"bpr": _fit_seeds(bpr_argv, workdir / "bpr"), "popularity": _fit(popularity_argv, workdir / "popularity")}
    bpr, popularity = numbers["bpr"]["test"], numbers["popularity"]["test"]
    numbers["bpr_over_popularity_ndcg@10"] = bpr["ndcg@10"]["mean"] / popularity["ndcg@10"] - 1
    checks = {}
    for m in ("ndcg@10", "recall@10"):
        checks[f"bpr_above_popularity_{m}_mean"] = bpr[m]["mean"] > popularity[m]
        checks[f"bpr_above_popularity_{m}_every_seed"] = all(v > popularity[m] for v in bpr[m]["per_seed"])
    return {"config": {"bpr": bpr_argv, "popularity": popularity_argv, "world": "toy" if quick else "movielens-1m"},
            "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> bool:
    return all(payload["checks"].values())


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    names = {"recall@10": "Recall@10", "ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "hit_rate@10": "Hit@10",
             "precision@10": "Precision@10", "recall@20": "Recall@20", "ndcg@20": "NDCG@20"}
    lines = ["| model (test split) | " + " | ".join(names.values()) + " |", "|---|" + "---|" * len(names)]
    bpr = numbers["bpr"]
    seeds = ", ".join(map(str, bpr["seeds"]))
    epochs = ", ".join(map(str, bpr["best_epoch"] or []))
    lines.append(f"| BPR, `bpr_movielens.yaml`, mean ± sd over seeds {seeds} (best epochs {epochs}) | "
                 + " | ".join(mean_sd(bpr["test"][m]) for m in METRICS) + " |")
    lines.append("| popularity (no seed: the same in every run) | "
                 + " | ".join(f"{numbers['popularity']['test'][m]:.4f}" for m in METRICS) + " |")
    return {"table": "\n".join(lines)}

