"""Sentiment following ("avoid X"): Mender with a polarity embedding, with S-DPO fine-tuning, and with both, against
Mender on the five axes of the preference-discerning benchmark (issue targets: combined score >= 0.20 and negative
keep-out >= 90% at K = 10, axes 1, 2, 3 and 5 within 5% of Mender)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.findings import discerning
from bench.findings.core import arguments, p_value

NAME = "discerning_avoid"
TITLE = "Sentiment following: polarity and S-DPO for Mender"
# A rerun into the same folder reuses the checkpoints whose settings match (the documented numbers were
# evaluated that way from the checkpoints this command trained).
COMMAND = "python -m recsys discern -c configs/recsys/mender_dpo.yaml --out artifacts/findings/discerning_avoid"
# One torch thread, 300 users x 150 items. Measured about 60 min wall on the 2 shared cores under load
# (Mender 275 s, Mender + polarity 618 s, each S-DPO fine-tuning about 700 s of it).
FULL_MINUTES = 60
CANDIDATE = "mender-both"  # declared before the run: the variant the targets are checked on
RULE = ("Mender + polarity + S-DPO reaches combined@10 >= 0.20 and negative keep-out@10 >= 0.90, with Recall@10 on "
        "axes 1, 2, 3 and 5 no more than 5% (relative) below Mender's")
# The same tiny world and model as the discerning finding, plus one epoch of fine-tuning.
QUICK_ARGV = [*discerning.QUICK_ARGV, "--dpo.max_epochs", "1"]
QUICK_CHECK = "schema only: one-epoch 16-d models on 120 users have no power to separate the variants"
VARIANTS = {"mender": "Mender", "mender-polarity": "+ polarity", "mender-sdpo": "+ S-DPO", "mender-both": "+ both"}
AXES = discerning.AXES
KEPT_AXES = ("recommendation", "fine_steering", "coarse_steering", "consolidation")


def optimization_runs(workdir: Path, variants=tuple(VARIANTS)) -> dict[str, Any]:
    """What each fine-tuning logged (pairs, validation loss and ranking accuracy before and after)."""
    import torch

    out = {}
    for variant in variants:
        path = workdir / variant / "best.ckpt"
        if path.is_file():
            meta = torch.load(path, map_location="cpu", weights_only=False).get("prefengine", {})
            if "preference_optimization_run" in meta:
                out[variant] = {"settings": meta.get("preference_optimization_settings"),
                                **meta["preference_optimization_run"]}
    return out


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    from recsys.experiments.discern import main

    base = ["-c", "configs/recsys/mender_dpo.yaml"]
    argv = [*base, *QUICK_ARGV, "--encoder.cache_dir", str(workdir / "cache")] if quick \
        else arguments(COMMAND, "discern")
    assert main([*argv, "--out", str(workdir)]) == 0
    metrics = json.loads((workdir / "metrics.json").read_text())
    details = json.loads((workdir / "details.json").read_text())
    numbers = {"axes": metrics, "vs_mender": details["vs_mender"],  # every variant paired with Mender
               "preference_optimization": optimization_runs(workdir),
               "world": {"users": details.get("users"), "items": details.get("items")},
               "extractor": details.get("extractor"), "semantic_ids": details.get("semantic_ids")}
    candidate, mender = metrics[CANDIDATE], metrics["mender"]
    checks = {"combined@10_at_least_0.20": candidate["sentiment"]["combined@10"] >= 0.20,
              "negative_kept_out@10_at_least_0.90": candidate["sentiment"]["negative_kept_out@10"] >= 0.90}
    for axis in KEPT_AXES:
        checks[f"{axis}_recall@10_within_5%_of_mender"] = \
            candidate[axis]["recall@10"] >= 0.95 * mender[axis]["recall@10"]
    return {"config": {"argv": argv, **details.get("config", {})}, "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    axes = numbers["axes"]
    variants = [v for v in VARIANTS if v in axes]
    head = " | ".join(f"{VARIANTS[v]} R@10 | {VARIANTS[v]} N@10" for v in variants)
    lines = [f"| axis | {head} | queries |", "|---|" + "---|" * (2 * len(variants) + 1)]
    for axis, title in AXES.items():
        if axis not in axes["mender"]:
            continue
        cells = [f"{axes[v][axis][m]:.4f}" for v in variants for m in ("recall@10", "ndcg@10")]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {int(axes['mender'][axis]['queries']):,} |")
    out = {"axes": "\n".join(lines)}

    lines = ["| variant | positive preference: R@10 | negative preference: item kept out of the top 10 | "
             "combined | combined vs Mender (95% CI, p) | kept out vs Mender (95% CI, p) |", "|---|---|---|---|---|---|"]
    for variant in variants:
        s = axes[variant]["sentiment"]
        tests = numbers["vs_mender"].get(variant, {}).get("sentiment", {})
        paired = [f"{t['mean_difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], p = {p_value(t['p_value'])}"
                  if t else "–" for t in (tests.get("combined@10"), tests.get("negative_kept_out@10"))]
        lines.append(f"| {VARIANTS[variant]} | {s['recall@10']:.4f} | {s['negative_kept_out@10']:.3f} | "
                     f"{s['combined@10']:.4f} | " + " | ".join(paired) + " |")
    out["sentiment"] = "\n".join(lines)

    lines = ["| variant minus Mender, Recall@10 | " + " | ".join(AXES[a].split(" (")[0] for a in KEPT_AXES) + " |",
             "|---|" + "---|" * len(KEPT_AXES)]
    for variant in variants[1:]:
        per_axis = numbers["vs_mender"].get(variant, {})
        cells = []
        for axis in KEPT_AXES:
            t = per_axis.get(axis, {}).get("recall@10")
            relative = axes[variant][axis]["recall@10"] / max(axes["mender"][axis]["recall@10"], 1e-12) - 1
            cells.append("–" if t is None else f"{t['mean_difference']:+.3f} ({relative:+.0%}) "
                                               f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], p = {p_value(t['p_value'])}")
        lines.append(f"| {VARIANTS[variant]} | " + " | ".join(cells) + " |")
    out["paired"] = "\n".join(lines)

    out["optimization"] = optimization_table(numbers["preference_optimization"], VARIANTS)
    return out


def optimization_table(runs: dict[str, Any], titles: dict[str, str]) -> str:
    """One row per fine-tuning: its pairs, validation loss and accuracies at the start and after, and its time."""
    lines = ["| variant | training pairs | validation loss: start → best | validation ranking accuracy: start → last "
             "epoch | validation likelihood accuracy: start → last epoch | seconds |", "|---|---|---|---|---|---|"]
    for variant, r in runs.items():
        start, last = r["start"], r["last_epoch"]
        lines.append(f"| {titles[variant]} | {r['pairs']['train']:,} | {start['valid/loss']:.4f} → "
                     f"{r['best_valid_loss']:.4f} | {start['valid/ranking_accuracy']:.3f} → "
                     f"{last['valid/ranking_accuracy']:.3f} | {start['valid/likelihood_accuracy']:.3f} → "
                     f"{last['valid/likelihood_accuracy']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)
