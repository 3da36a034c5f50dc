"""Knox et al. (TMLR 2024): rewards learned with the regret preference model give near-optimal policies on
more MDPs than the partial-return model, from the same regret-labelled preferences (over seeds 0, 1, 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.findings.core import arguments, mean_sd, p_value, stats

NAME = "regret_vs_return"
TITLE = "Reward learning from preferences: regret vs partial return"
COMMAND = ("python -m agents experiment regret-vs-return --mdps 30 --prefs 300,1000,3000,10000 --seeds 0,1,2 "
           "--workers 1 --out artifacts/findings/regret_vs_return")
# One seed: 281-299 s wall (146-172 s of CPU) with 2 workers at load average 4-8. Three seeds on one worker:
# 398 s of CPU (about 7 min on a free core), 36 min wall at load average 5-10.
FULL_MINUTES = 15
RULE = ("over seeds 0, 1 and 2 (each 31 MDPs: the delivery board and 30 random boards of its own), the regret model is "
        "near-optimal (scaled return > 0.9) on a larger mean share of the MDPs than the partial-return model at every "
        "number of preferences, with paired t-test p < 0.05 over the seeds, and its delivery-board reward keeps the "
        "true ordering goal > coin > 0 > gas > mud > sheep in every seed at every number of preferences")
QUICK_ARGV = ["--mdps", "2", "--prefs", "100,300", "--steps", "300", "--seeds", "0", "--workers", "1"]
QUICK_CHECK = ("direction: the regret model's delivery-board reward keeps the true ordering from 300 "
               "preferences (3 MDPs, 300 Adam steps, one seed; too few MDPs to compare near-optimal shares)")
MODELS = ("regret", "partial_return")
FEATURES = ("gas", "goal", "sheep", "coin", "roadblock", "mud")


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    return run_over_seeds(QUICK_ARGV if quick else arguments(COMMAND, "regret-vs-return"), workdir)


def run_over_seeds(argv: list[str], workdir: Path) -> dict[str, Any]:
    """Run `agents experiment regret-vs-return ARGV --seeds ...` and read its numbers and the rule's checks."""
    from agents.experiments.regret_vs_return import delivery_ordering, main

    assert main([*argv, "--out", str(workdir)]) == 0
    over = json.loads((workdir / "over_seeds.json").read_text())
    seeds, prefs = over["seeds"], [str(n) for n in over["config"]["prefs"]]
    numbers: dict[str, Any] = {"seeds": seeds, "mdps_per_seed": over["mdps_per_seed"],
                               "prefs": [int(n) for n in prefs], "by_prefs": over["by_prefs"],
                               "paired": over["paired"]}
    deliveries = []
    for seed in seeds:
        records = json.loads((workdir / f"seed{seed}" / "per_mdp.json").read_text())["mdps"]
        deliveries.append(next((r for r in records if r["name"] == "delivery"), None))
    if all(d is not None for d in deliveries):
        numbers["delivery"] = {"true_weights": deliveries[0]["true_weights"], "by_prefs": {}}
        for n in prefs:
            numbers["delivery"]["by_prefs"][n] = {}
            for model in MODELS:
                scaled = [delivery_ordering(d["learned_weights"][model][n]) for d in deliveries]
                numbers["delivery"]["by_prefs"][n][model] = {
                    "weights_over_abs_gas": {f: stats([w[f] for w, _ in scaled]) for f in FEATURES},
                    "ordering_holds": [holds for _, holds in scaled],
                    "scaled_return": stats([d["scaled_return"][model][n] for d in deliveries])}
    checks = {}
    for n in prefs:
        regret, partial = numbers["by_prefs"][n]["regret"], numbers["by_prefs"][n]["partial_return"]
        p = numbers["paired"][n]["near_optimal"]["p_value"]
        checks[f"regret_more_often_near_optimal_at_{n}"] = regret["near_optimal"]["mean"] > partial["near_optimal"]["mean"]
        checks[f"paired_p_below_0.05_at_{n}"] = p is not None and p < 0.05
    if "delivery" in numbers:
        checks["delivery_ordering_in_every_seed_at_every_size"] = all(
            all(numbers["delivery"]["by_prefs"][n]["regret"]["ordering_holds"]) for n in prefs)
    return {"config": over["config"], "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> bool:
    return all(payload["numbers"]["delivery"]["by_prefs"]["300"]["regret"]["ordering_holds"])


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    lines = ["| preferences | near-optimal: regret model | near-optimal: partial-return model | difference "
             "| paired p | median scaled return: regret | median: partial return |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, row in numbers["by_prefs"].items():
        regret, partial, paired = row["regret"], row["partial_return"], numbers["paired"][n]["near_optimal"]
        share = mean_sd(regret["near_optimal"], 3)
        bold = regret["near_optimal"]["mean"] > partial["near_optimal"]["mean"]
        lines.append(f"| {n} | {'**' + share + '**' if bold else share} | {mean_sd(partial['near_optimal'], 3)} "
                     f"| {paired['mean_difference']:+.3f} | {p_value(paired['p_value'])} "
                     f"| {mean_sd(regret['median_scaled_return'], 3)} "
                     f"| {mean_sd(partial['median_scaled_return'], 3)} |")
    lines += ["", "Per seed, near-optimal share regret / partial return: " + "; ".join(
        f"{n}: " + ", ".join(f"{r:.3f} / {p:.3f}" for r, p in zip(row["regret"]["near_optimal"]["per_seed"],
                                                                  row["partial_return"]["near_optimal"]["per_seed"]))
        for n, row in numbers["by_prefs"].items()) + f" (seeds {', '.join(map(str, numbers['seeds']))})."]
    out = {"near_optimal": "\n".join(lines)}
    if "delivery" in numbers:
        lines = ["| preferences | " + " | ".join(FEATURES) + " | goal > coin > 0 > gas > mud > sheep | scaled return |",
                 "|---:|" + "---:|" * len(FEATURES) + ":---:|---:|"]
        for n, row in numbers["delivery"]["by_prefs"].items():
            regret = row["regret"]
            weights = " | ".join(mean_sd(regret["weights_over_abs_gas"][f], 2) for f in FEATURES)
            held = regret["ordering_holds"]
            lines.append(f"| {n} | {weights} | {sum(held)} of {len(held)} seeds | {mean_sd(regret['scaled_return'], 3)} |")
        true = " | ".join(f"{w:g}" for w in numbers["delivery"]["true_weights"])
        lines.append(f"| true | {true} | yes | 1 |")
        out["delivery"] = "\n".join(lines)
    return out

