"""Knox et al. (TMLR 2024): rewards learned with the regret preference model give near-optimal policies on
more MDPs than the partial-return model, from the same regret-labelled preferences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.findings.core import arguments

NAME = "regret_vs_return"
TITLE = "Reward learning from preferences: regret vs partial return"
COMMAND = ("python -m agents experiment regret-vs-return --mdps 30 --prefs 300,1000,3000,10000 --seed 0 "
           "--out artifacts/findings/regret_vs_return")
FULL_MINUTES = 10  # 281-299 s wall at load average 4-8; 663 s (166 s of CPU) at load average 13-17
RULE = ("the regret model is near-optimal (scaled return > 0.9) on a larger share of the MDPs (31 at full scale) than the "
        "partial-return model at every number of preferences, and its delivery-board reward keeps the true "
        "ordering goal > coin > 0 > gas > mud > sheep at every number of preferences")
QUICK_ARGV = ["--mdps", "2", "--prefs", "100,300", "--steps", "300", "--seed", "0", "--workers", "1"]
QUICK_CHECK = ("direction: the regret model's delivery-board reward keeps the true ordering from 300 "
               "preferences (3 MDPs, 300 Adam steps; too few MDPs to compare near-optimal shares)")
MODELS = ("regret", "partial_return")


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    from agents.experiments.regret_vs_return import delivery_ordering, main

    argv = QUICK_ARGV if quick else arguments(COMMAND, "regret-vs-return")
    assert main([*argv, "--out", str(workdir)]) == 0
    summary = json.loads((workdir / "results.json").read_text())
    detail = json.loads((workdir / "per_mdp.json").read_text())
    records, prefs = detail["mdps"], [str(n) for n in detail["config"]["prefs"]]
    numbers: dict[str, Any] = {"mdps": len(records), "prefs": [int(n) for n in prefs], "by_prefs": {}}
    for n in prefs:
        row = {}
        for model in MODELS:
            returns = [r["scaled_return"][model][n] for r in records]
            row[model] = {"near_optimal": summary[model][n]["near_optimal"],
                          "mean_scaled_return": summary[model][n]["scaled_return"],
                          "median_scaled_return": float(np.median(returns))}
        numbers["by_prefs"][n] = row
    delivery = next((r for r in records if r["name"] == "delivery"), None)
    if delivery is not None:
        numbers["delivery"] = {"true_weights": delivery["true_weights"], "by_prefs": {}}
        for n in prefs:
            numbers["delivery"]["by_prefs"][n] = {}
            for model in MODELS:
                scaled, holds = delivery_ordering(delivery["learned_weights"][model][n])
                numbers["delivery"]["by_prefs"][n][model] = {"weights_over_abs_gas": scaled, "ordering_holds": holds,
                                                             "scaled_return": delivery["scaled_return"][model][n]}
    checks = {f"regret_more_often_near_optimal_at_{n}": numbers["by_prefs"][n]["regret"]["near_optimal"]
              > numbers["by_prefs"][n]["partial_return"]["near_optimal"] for n in prefs}
    if delivery is not None:
        checks["delivery_ordering_at_every_size"] = all(
            numbers["delivery"]["by_prefs"][n]["regret"]["ordering_holds"] for n in prefs)
    return {"config": detail["config"], "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> bool:
    return bool(payload["numbers"]["delivery"]["by_prefs"]["300"]["regret"]["ordering_holds"])


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    lines = ["| preferences | near-optimal: regret model | near-optimal: partial-return model "
             "| median scaled return: regret | median: partial return |", "|---:|---:|---:|---:|---:|"]
    for n, row in numbers["by_prefs"].items():
        regret, partial = row["regret"], row["partial_return"]
        bold = regret["near_optimal"] > partial["near_optimal"]
        share = f"{regret['near_optimal']:.3f}"
        lines.append(f"| {n} | {'**' + share + '**' if bold else share} | {partial['near_optimal']:.3f} "
                     f"| {regret['median_scaled_return']:.3f} | {partial['median_scaled_return']:.3f} |")
    out = {"near_optimal": "\n".join(lines)}
    if "delivery" in numbers:
        features = ("gas", "goal", "sheep", "coin", "roadblock", "mud")
        lines = ["| preferences | " + " | ".join(features) + " | goal > coin > 0 > gas > mud > sheep | scaled return |",
                 "|---:|" + "---:|" * len(features) + ":---:|---:|"]
        for n, row in numbers["delivery"]["by_prefs"].items():
            regret = row["regret"]
            weights = " | ".join(f"{regret['weights_over_abs_gas'][f]:.2f}" for f in features)
            lines.append(f"| {n} | {weights} | {'yes' if regret['ordering_holds'] else 'no'} "
                         f"| {regret['scaled_return']:.3f} |")
        true = " | ".join(f"{w:g}" for w in numbers["delivery"]["true_weights"])
        lines.append(f"| true | {true} | yes | 1 |")
        out["delivery"] = "\n".join(lines)
    return out
