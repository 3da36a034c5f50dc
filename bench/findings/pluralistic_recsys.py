"""Pluralistic preferences for recommendation: K taste prototypes with per-user mixtures place unseen users
from a few comparisons better than one shared model, recover the taste types, and do no harm where
there is only one type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.findings.core import arguments, p_value

NAME = "pluralistic_recsys"
TITLE = "Pluralistic preferences: new users placed among taste prototypes from comparisons"
COMMAND = ("python -m recsys compare -c configs/recsys/compare_pluralistic.yaml "
           "--out artifacts/findings/pluralistic_recsys")
FULL_MINUTES = 4
RULE = ("on the world with 4 taste types, unseen users' held-out pair accuracy at M = 10 comparisons is >= 10 points "
        "above the single shared model, the dominant prototype of seen users recovers the true type with ARI >= "
        "0.8, and on the one-type control world the mixture is not below the shared model at M = 10 (seed means)")
QUICK_CHECK = ("direction: the mixture's unseen-user pair accuracy at M = 10 is above the shared model's by at least "
               "a point (400-user world, one seed, 25 epochs; measured +4.0 points); the targets need the full size")
QUICK = ("{seeds: [0], world: {preset: toy, n_users: 400, n_items: 150, taste_types: 4, type_influence: 0.8, "
         "type_concentration: 0.2}, users: {seen: 240, validation: 80, test: 80}, model: {epochs: 25}, "
         "comparisons: [1, 10]}")
MODELS = {"mixture": "mixture of 4 prototypes", "shared": "one shared model", "per_user": "per-user vectors"}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    return run_compare(COMMAND, QUICK, workdir, quick)


def run_compare(command: str, quick_override: str, workdir: Path, quick: bool) -> dict[str, Any]:
    """Run a `python -m recsys compare` pluralistic command into `workdir`; its numbers and checks."""
    from recsys.experiments.compare import main

    argv = arguments(command, "compare")
    if quick:
        argv += ["--override", quick_override]
    assert main([*argv, "--out", str(workdir)]) == 0
    block = json.loads((workdir / "metrics.json").read_text())
    finding = block["finding"]
    checks = {"unseen_gain_at_10": finding["unseen_gain_met"], "type_recovery_ari": finding["ari_met"],
              "control_not_worse": finding["control_not_worse"]}
    numbers = {"typed": block["typed"], "control": block["control"], "finding": finding,
               "comparisons": block["config"]["comparisons"]}
    return {"config": {"argv": argv, **block["config"]}, "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> bool:
    return bool(payload["numbers"]["finding"]["unseen_gain"] >= 0.01)


def _cell(stats: dict[str, Any]) -> str:
    sd = stats.get("sd")
    return f"{stats['mean']:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    ms = numbers["comparisons"]
    lines = ["| world | model | seen users | " + " | ".join(f"unseen, M = {m}" for m in ms) + " |",
             "|---|---|---|" + "---|" * len(ms)]
    for world, title in (("typed", "4 types"), ("control", "1 type (control)")):
        for model, name in MODELS.items():
            row = numbers[world]["models"][model]
            cells = [_cell(row["seen_accuracy"])] + [_cell(row["unseen_accuracy"][str(m)]) for m in ms]
            lines.append(f"| {title} | {name} | " + " | ".join(cells) + " |")
    f = numbers["finding"]
    typed = numbers["typed"]
    ari = typed["models"]["mixture"].get("seen_ari", {})
    unseen_ari = typed["models"]["mixture"].get("unseen_ari_at_max", {})
    oracle = typed["models"]["mixture"].get("seen_oracle_ari")
    unseen_oracle = typed["models"]["mixture"].get("unseen_oracle_ari_at_max")
    allow = " (an oracle that knows the type centres, from the same answers: {})"
    tests = typed["tests"]
    per_user = tests["mixture_vs_per_user"]["unseen@10"]["over_test_users"]
    summary = (f"Mixture minus shared, unseen users at M = 10: {100 * f['unseen_gain']:+.1f} points "
               f"(p = {p_value(f['unseen_gain_p_users'])} over test users pooled across seeds; target +10: "
               f"{'met' if f['unseen_gain_met'] else 'missed'}). Mixture minus per-user vectors at M = 10: "
               f"{100 * per_user['difference']:+.1f} points (p = {p_value(per_user['p_value'])}). Type recovery, "
               f"seen users: ARI {_cell(ari) if ari else '–'} (target 0.8: {'met' if f['ari_met'] else 'missed'})"
               f"{allow.format(_cell(oracle)) if oracle else ''}; unseen users placed from {max(ms)} comparisons: "
               f"ARI {_cell(unseen_ari) if unseen_ari else '–'}{allow.format(_cell(unseen_oracle)) if unseen_oracle else ''}. "
               f"Control (one type): mixture minus shared at M = 10 {100 * f['control_difference']:+.2f} points "
               f"(p = {p_value(f['control_p_users'])}; 'not worse': "
               f"{'met' if f['control_not_worse'] else 'missed'}).")
    return {"table": "\n".join(lines), "summary": summary}
