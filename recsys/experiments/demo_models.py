"""The recommender part of `make demo`: BPR and NBPO on the noisy preference world, judged on observed and clean labels.

    from recsys.experiments.demo_models import run_demo
    table = run_demo("artifacts/demo")      # trains, evaluates, prints and returns the table

Both models train on the same split of the world of configs/recsys/compare_noisy.yaml (the `small`
preset with 5,000 users) with 20% injected false positives, with the hyper-parameters of
configs/recsys/bpr.yaml and nbpo.yaml, validate every 2 epochs, keep their best validation epoch,
and are evaluated by full ranking against the observed test labels ("test/...") and against the
clean labels, the test rows the user truly likes ("clean/..."). Checkpoints (with the prefengine
block, ready for `python -m recsys export`) are under out_dir/runs/<model>/seed0/checkpoints/.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data.datamodule import InteractionDataModule
from recsys.experiments.runs import load_model_spec, run_one

CONFIGS = {"BPR": "configs/recsys/bpr.yaml", "NBPO": "configs/recsys/nbpo.yaml"}
COLUMNS = ("test/ndcg@20", "clean/ndcg@20", "test/recall@20", "clean/recall@20")


def run_demo(out_dir, false_positive_rate: float = 0.2, seed: int = 0, max_epochs: int | None = None,
             n_users: int = 5000) -> pd.DataFrame:
    """Train BPR and NBPO once each; return one row per model (metrics, flip AUC, epochs, seconds, checkpoint)."""
    out = Path(out_dir)
    root = Path(__file__).resolve().parents[2]  # the repository root
    data = InteractionDataModule(world_preset="small", world_users=n_users, false_positive_rate=false_positive_rate,
                                 seed=seed)
    print(f"world: {data.world.describe()}")
    print(f"split: {data.split.describe()}")
    rows = []
    for name, config in CONFIGS.items():
        spec = load_model_spec(name.lower(), {"config": str(root / config)})
        trainer = {"check_val_every_n_epoch": 2, **({"max_epochs": max_epochs} if max_epochs is not None else {})}
        run = run_one(data, spec, seed, out / "runs" / name.lower() / f"seed{seed}", trainer,
                      monitor="valid/ndcg@20", patience=6, ks=[10, 20])
        row = {"model": name, **{key: run.result.metrics[key] for key in COLUMNS},
               "flip_auc": run.diagnostics.get("flip_auc", float("nan")),
               "best_epoch": int(run.diagnostics["best_epoch"]), "seconds": round(run.diagnostics["train_seconds"], 1),
               "checkpoint": run.checkpoint}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 160):
        print(f"\nBPR vs NBPO on the world with {false_positive_rate:.0%} false positives "
              "(test = observed labels, clean = truly liked):")
        print(table.drop(columns="checkpoint").to_string())
    return table
