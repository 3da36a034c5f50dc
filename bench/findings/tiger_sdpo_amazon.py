"""S-DPO fine-tuning of TIGER on real sequences (amazon-toys, leave-one-out, full ranking) against the supervised
TIGER it starts from, paired over the same test users: Recall / NDCG at 5 and 10, reported whatever the outcome."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bench.findings.core import REPO, arguments, p_value
from bench.findings.discerning_avoid import optimization_runs, optimization_table

NAME = "tiger_sdpo_amazon"
TITLE = "S-DPO for TIGER on amazon-toys"
COMMAND = ("python -m recsys discern -c configs/recsys/tiger_sdpo.yaml --data.sequences ../shared/data/amazon-toys "
           "--out artifacts/findings/tiger_sdpo_amazon")
# The config's CPU size: RQ-VAE, 5 epochs of TIGER and 2 epochs of S-DPO on 20,000 pairs (see the config).
FULL_MINUTES = 45
RULE = ("TIGER + S-DPO has a higher test Recall@10 than the supervised TIGER it starts from, paired over the "
        "amazon-toys test users (p < 0.05), and a higher NDCG@10")
QUICK_CHECK = "schema only: a 16-d model on 150 users for one epoch has no power to separate the two"
QUICK_ARGV = ["--rqvae.max_epochs", "5", "--rqvae.codebook_size", "16", "--rqvae.hidden_dims", "[32]",
              "--model.d_model", "16", "--model.n_heads", "2", "--model.ff_dim", "32", "--model.encoder_layers", "1",
              "--model.decoder_layers", "1", "--train.max_epochs", "1", "--dpo.max_epochs", "1",
              "--dpo.max_train_pairs", "300", "--eval.beam_size", "10", "--threads", "1"]
SYSTEMS = {"tiger": "TIGER (supervised)", "tiger-sdpo": "TIGER + S-DPO"}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
TOYS = REPO / ".." / "shared" / "data" / "amazon-toys"


def _quick_sequences(directory: Path) -> list[str]:
    """The first 150 users of the shared file with their attributes (bench reproduce's slice), or, without the
    shared data, 150 made-up users in the same layout with IDs from the interactions."""
    from bench.bench_reproduce import quick_data

    toys = quick_data(TOYS.parent, directory) / "amazon-toys"
    if (toys / "sequences.txt").is_file():
        return ["--data.sequences", str(toys)]
    toys.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([str(u), *(str((u * 7 + 3 * j) % 90 + 1) for j in range(4 + u % 6))]) for u in range(1, 151)]
    (toys / "sequences.txt").write_text("\n".join(lines) + "\n")
    return ["--data.sequences", str(toys), "--data.id_source", "svd"]


def _supervised_curve(workdir: Path) -> list[dict[str, float]]:
    """TIGER's validation loss per epoch, from its CSV log."""
    path = workdir / "tiger" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as rows:
        return [{"epoch": int(r["epoch"]), "valid_loss": float(r["valid/loss"])} for r in csv.DictReader(rows)
                if r.get("valid/loss")]


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    from recsys.experiments.discern import main

    if quick:
        argv = ["-c", "configs/recsys/tiger_sdpo.yaml", *_quick_sequences(workdir / "data"), "--train.progress",
                "false", *QUICK_ARGV]
    else:
        argv = arguments(COMMAND, "discern")
    assert main([*argv, "--out", str(workdir)]) == 0
    metrics = json.loads((workdir / "metrics.json").read_text())
    details = json.loads((workdir / "details.json").read_text())
    paired = details["tiger_sdpo_vs_tiger"]["recommendation"]
    numbers = {"test": {v: metrics[v]["recommendation"] for v in SYSTEMS}, "paired": paired,
               "preference_optimization": optimization_runs(workdir, ("tiger-sdpo",)),
               "supervised_valid_loss": _supervised_curve(workdir),
               "users": details.get("users"), "items": details.get("items"),
               "semantic_ids": details.get("semantic_ids")}
    tuned, start = numbers["test"]["tiger-sdpo"], numbers["test"]["tiger"]
    checks = {"recall@10_higher_p<0.05": tuned["recall@10"] > start["recall@10"]
              and paired["recall@10"]["p_value"] < 0.05,
              "ndcg@10_higher": tuned["ndcg@10"] > start["ndcg@10"]}
    return {"config": {"argv": argv, **details.get("config", {})}, "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    lines = ["| system | " + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for variant, title in SYSTEMS.items():
        row = numbers["test"][variant]
        lines.append(f"| {title} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS) + " |")
    out = {"test": "\n".join(lines)}

    lines = ["| hit rate | TIGER + S-DPO minus TIGER | 95% bootstrap CI | paired t p | test users |",
             "|---|---|---|---|---|"]
    for key, t in numbers["paired"].items():
        lines.append(f"| {key.replace('recall', 'R')} | {t['mean_difference']:+.4f} | [{t['ci_low']:+.4f}, "
                     f"{t['ci_high']:+.4f}] | {p_value(t['p_value'])} | {int(t['n']):,} |")
    out["paired"] = "\n".join(lines)

    out["optimization"] = optimization_table(numbers["preference_optimization"], SYSTEMS)
    return out
