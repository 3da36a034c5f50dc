"""Paischer et al. (2024): Mender, which reads the user's stated preferences, beats TIGER, which reads only the
history, on preference-based recommendation and steering (the preference-discerning benchmark)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.findings.core import arguments, p_value

NAME = "discerning"
TITLE = "Preference discerning: Mender vs TIGER"
# reuse_checkpoints false: a regeneration trains afresh, never reloads the checkpoints of an earlier run.
COMMAND = ("python -m recsys discern -c configs/recsys/mender.yaml --train.reuse_checkpoints false "
           "--out artifacts/findings/discerning")
# One torch thread. Measured 67 min wall (1,101 s of CPU) on the 2 shared cores at load average 12-17.
FULL_MINUTES = 60
RULE = ("Mender's Recall@10 is above TIGER's on axes 1-3 (preference-based recommendation, fine- and "
        "coarse-grained steering), each with paired p < 0.05 over the same queries")
# The test suite's tiny world and model (tests/recsys/test_discern.py), one epoch.
QUICK_ARGV = ["--seed", "0", "--data.world_preset", "toy",
              "--data.world", "{n_users: 120, n_items: 80, n_categories: 4, interactions_per_user: 10.0, "
              "review_rate: 1.0}",
              "--rqvae.max_epochs", "5", "--rqvae.codebook_size", "8", "--rqvae.hidden_dims", "[32]",
              "--rqvae.latent_dim", "8", "--model.d_model", "16", "--model.n_heads", "2", "--model.ff_dim", "32",
              "--model.encoder_layers", "1", "--model.decoder_layers", "1", "--model.max_history", "5",
              "--train.max_epochs", "1", "--train.batch_size", "128", "--train.progress", "false",
              "--eval.beam_size", "10", "--eval.max_queries", "40"]
QUICK_CHECK = ("schema only: a one-epoch 16-d model on 120 users and 40 queries per axis has no power to "
               "separate Mender from TIGER")
AXES = {"recommendation": "1. preference-based recommendation", "fine_steering": "2. fine-grained steering",
        "coarse_steering": "3. coarse-grained steering", "sentiment": "4. sentiment, positive preference",
        "consolidation": "5. history consolidation"}
RULE_AXES = ("recommendation", "fine_steering", "coarse_steering")
VARIANTS = {"tiger": "TIGER", "mender": "Mender"}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    from recsys.experiments.discern import main

    argv = [*QUICK_ARGV, "--encoder.cache_dir", str(workdir / "cache")] if quick else arguments(COMMAND, "discern")
    assert main([*argv, "--out", str(workdir)]) == 0
    metrics = json.loads((workdir / "metrics.json").read_text())
    details = json.loads((workdir / "details.json").read_text())
    numbers = {"axes": metrics, "mender_minus_tiger": details.get("mender_vs_tiger", {}),
               "extractor": details.get("extractor"), "semantic_ids": details.get("semantic_ids")}
    checks = {}
    for axis in RULE_AXES:
        test = numbers["mender_minus_tiger"][axis]["recall@10"]
        checks[f"mender_above_tiger_{axis}_recall@10"] = test["mean_difference"] > 0 and test["p_value"] < 0.05
    return {"config": {"argv": argv, **details.get("config", {})}, "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    axes = payload["numbers"]["axes"]
    columns = [f"{m}@{k}" for k in (5, 10) for m in ("recall", "ndcg")]
    head = " | ".join(f"{v} {'R' if c.startswith('recall') else 'N'}@{c.split('@')[1]}"
                      for c in columns for v in VARIANTS.values())
    lines = [f"| axis | {head} | queries |", "|---|" + "---|" * (2 * len(columns) + 1)]
    for axis, title in AXES.items():
        if axis not in axes["tiger"]:
            continue
        cells = []
        for column in columns:
            tiger, mender = axes["tiger"][axis][column], axes["mender"][axis][column]
            cells += [f"**{tiger:.4f}**" if tiger > mender else f"{tiger:.4f}",
                      f"**{mender:.4f}**" if mender > tiger else f"{mender:.4f}"]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {int(axes['tiger'][axis]['queries']):,} |")
    out = {"axes": "\n".join(lines)}
    lines = ["| axis | @5 | @10 |", "|---|---|---|"]
    for axis, title in AXES.items():
        per_k = payload["numbers"]["mender_minus_tiger"].get(axis)
        if axis == "sentiment" or per_k is None:
            continue
        cells = [f"{t['mean_difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], p = {p_value(t['p_value'])}"
                 for t in (per_k["recall@5"], per_k["recall@10"])]
        lines.append(f"| {title.split(' (')[0]} | " + " | ".join(cells) + " |")
    out["paired"] = "\n".join(lines)
    lines = ["| variant | positive preference: R@10 | negative preference: item kept out of the top 10 "
             "| combined (retrieved with the positive, kept out with the negative) |", "|---|---|---|---|"]
    for variant, label in VARIANTS.items():
        s = axes[variant].get("sentiment")
        if s is not None:
            lines.append(f"| {label} | {s['recall@10']:.4f} | {s['negative_kept_out@10']:.3f} | {s['combined@10']:.4f} |")
    out["sentiment"] = "\n".join(lines)
    return out
