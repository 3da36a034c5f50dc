"""Paischer et al. (2024) over seeds (issue 20): the `discerning` benchmark, Mender vs TIGER, at a reduced size and
once per seed 0, 1, 2, so that the docs quote mean ± sd over seeds and a test paired over them, not one run.

Only the world's size and the training epochs differ from the full-size finding (`discerning`, one seed, about an
hour); every other setting is configs/recsys/mender.yaml's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.findings import discerning
from bench.findings.core import arguments, mean_sd, p_value

NAME = "discerning_seeds"
TITLE = "Preference discerning over seeds: Mender vs TIGER at a reduced size"
SIZE = "500 users x 200 items (15 interactions per user on average, every one reviewed), 10 training epochs"
COMMAND = ("python -m recsys discern -c configs/recsys/mender.yaml "
           "--data.world '{n_users: 500, n_items: 200, interactions_per_user: 15.0, review_rate: 1.0}' "
           "--train.max_epochs 10 --train.reuse_checkpoints false --seeds 0,1,2 "
           "--out artifacts/findings/discerning_seeds")
# One torch thread, the seeds one after another: measured 455 s wall at load average about 2 (each seed 2.5 min).
FULL_MINUTES = 8
RULE = ("over seeds 0, 1 and 2 at the reduced size, Mender's mean Recall@10 is above TIGER's on axes 1-3 with paired "
        "t-test p < 0.05 over the seeds, and in every seed the full-size rule holds (Mender above TIGER with paired "
        "p < 0.05 over that seed's queries)")
QUICK_ARGV = ["--seeds", "0,1", *discerning.QUICK_ARGV[discerning.QUICK_ARGV.index("--seed") + 2:]]
QUICK_CHECK = "schema only: two seeds of the `discerning` quick size, which has no power to separate the variants"


def _over_seeds(summary: dict[str, Any], key: str) -> dict[str, Any]:
    return {"mean": summary[key], "sd": summary["sd"][key], "per_seed": summary["per_seed"][key]}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    from recsys.experiments.discern import main

    argv = [*QUICK_ARGV, "--encoder.cache_dir", str(workdir / "cache")] if quick else arguments(COMMAND, "discern")
    assert main([*argv, "--out", str(workdir)]) == 0
    summary = json.loads((workdir / "metrics.json").read_text())
    seeds = summary["seeds"]
    details = {seed: json.loads((workdir / f"seed{seed}" / "details.json").read_text()) for seed in seeds}
    axes: dict[str, dict[str, dict[str, Any]]] = {}
    for key in summary["per_seed"]:
        variant, axis, metric = key.split("/")
        axes.setdefault(variant, {}).setdefault(axis, {})[metric] = _over_seeds(summary, key)
    over_seeds: dict[str, dict[str, Any]] = {}
    for key, test in summary.get("mender_vs_tiger", {}).items():
        axis, metric = key.split("/")
        over_seeds.setdefault(axis, {})[metric] = test
    # each seed's own test, paired over its queries (the full-size finding's statistic)
    per_seed = {axis: {metric: [details[seed]["mender_vs_tiger"][axis][metric] for seed in seeds]
                       for metric in details[seeds[0]]["mender_vs_tiger"][axis]}
                for axis in details[seeds[0]].get("mender_vs_tiger", {})}
    numbers = {"seeds": seeds, "size": SIZE, "axes": axes, "mender_minus_tiger_over_seeds": over_seeds,
               "mender_minus_tiger_per_seed": per_seed}
    checks = {}
    for axis in discerning.RULE_AXES:
        test = over_seeds[axis]["recall@10"]
        checks[f"mender_above_tiger_{axis}_recall@10_over_seeds"] = test["mean_difference"] > 0 and test["p_value"] < 0.05
        checks[f"mender_above_tiger_{axis}_recall@10_every_seed"] = all(
            t["mean_difference"] > 0 and t["p_value"] < 0.05 for t in per_seed[axis]["recall@10"])
    config = {k: v for k, v in details[seeds[0]].get("config", {}).items() if k != "seed"}
    return {"config": {"argv": argv, "seeds": seeds, **config}, "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    axes, seeds = numbers["axes"], ", ".join(map(str, numbers["seeds"]))
    columns = ("recall@10", "ndcg@10")
    head = " | ".join(f"{label} {'R' if c.startswith('recall') else 'N'}@10" for c in columns
                      for label in discerning.VARIANTS.values())
    lines = [f"| axis (mean ± sd over seeds {seeds}) | {head} | queries per seed |", "|---|" + "---|" * 5]
    for axis, title in discerning.AXES.items():
        if axis not in axes["tiger"]:
            continue
        cells = []
        for column in columns:
            tiger, mender = axes["tiger"][axis][column], axes["mender"][axis][column]
            cells += [f"**{mean_sd(tiger)}**" if tiger["mean"] > mender["mean"] else mean_sd(tiger),
                      f"**{mean_sd(mender)}**" if mender["mean"] > tiger["mean"] else mean_sd(mender)]
        queries = ", ".join(f"{int(q):,}" for q in axes["tiger"][axis]["queries"]["per_seed"])
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {queries} |")
    out = {"axes": "\n".join(lines)}
    lines = [f"| axis | Mender - TIGER R@10, paired over seeds {seeds}: mean [95% bootstrap CI], p | "
             "each seed: difference, p paired over its queries |", "|---|---|---|"]
    for axis, title in discerning.AXES.items():
        test = numbers["mender_minus_tiger_over_seeds"].get(axis, {}).get("recall@10")
        per_seed = numbers["mender_minus_tiger_per_seed"].get(axis, {}).get("recall@10")
        if axis == "sentiment" or test is None or per_seed is None:
            continue
        each = "; ".join(f"{t['mean_difference']:+.3f}, p = {p_value(t['p_value'])}" for t in per_seed)
        lines.append(f"| {title.split(' (')[0]} | {test['mean_difference']:+.3f} [{test['ci_low']:+.3f}, "
                     f"{test['ci_high']:+.3f}], p = {p_value(test['p_value'])} | {each} |")
    out["paired"] = "\n".join(lines)
    return out
