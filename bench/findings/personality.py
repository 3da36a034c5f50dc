"""Personality-aware ranking (Roffo & Vinciarelli, 2016) on the preference world: Big-Five traits raise new
(cold) users' click AUC and do not hurt the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench.findings.core import REPO, arguments, p_value, stats

NAME = "personality"
TITLE = "Personality-aware ranking: traits for new users"
COMMAND = ("python -m recsys compare -c configs/recsys/compare_personality.yaml "
           "--out artifacts/findings/personality")
FULL_MINUTES = 4  # 9 runs; 3.4 min regenerated on the 2-core machine
RULE = ("the ranker with traits raises cold-user click AUC over the same ranker without traits by >= 0.02 "
        "(mean over seeds), significantly over cold users (per-user AUC, p < 0.05), and warm users are not "
        "significantly worse (the comparison's own `finding.holds`)")
QUICK_CHECK = ("direction: cold users' per-user click AUC is higher with traits than without, paired over the "
               "80 cold users with p < 0.05 (400-user toy world, one seed, at most 4 epochs; measured +0.071, "
               "p = 5e-4); the rule's gain over seeds needs several seeds, so the quick run never holds")
# The documented config with a small world, one seed and few epochs.
QUICK = {"seeds": [0], "data": {"world_preset": "toy", "world_users": 400},
         "trainer": {"max_epochs": 4, "check_val_every_n_epoch": 1}, "patience": 2, "max_epochs": 4}
MODELS = {"traits": "ranker with traits", "no_traits": "same ranker, no traits", "mf": "BPR matrix factorization"}


def quick_config(workdir: Path) -> Path:
    config = yaml.safe_load((REPO / "configs/recsys/compare_personality.yaml").read_text())
    config["seeds"], config["patience"] = QUICK["seeds"], QUICK["patience"]
    config["data"].update(QUICK["data"])
    config["trainer"] = QUICK["trainer"]
    for model in config["models"].values():
        model["max_epochs"] = QUICK["max_epochs"]
        model["config"] = str(REPO / model["config"])
    path = workdir / "quick.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # the first model is the reference
    return path


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    from recsys.experiments.compare import main

    argv = arguments(COMMAND, "compare")
    if quick:
        workdir.mkdir(parents=True, exist_ok=True)
        argv = ["-c", str(quick_config(workdir))]
    assert main([*argv, "--out", str(workdir)]) == 0
    block = json.loads((workdir / "metrics.json").read_text())
    pointwise = block["pointwise"]
    numbers: dict[str, Any] = {"models": {}, "finding": block["finding"], "users": block["users"]}
    for model in MODELS:
        row = {key: stats(pointwise["per_seed"][model][f"test_{group}/auc"]) for group, key in
               (("warm", "warm_click_auc"), ("cold", "cold_click_auc"))}
        for key in ("user_auc", "logloss", "rmse"):
            value = pointwise[model].get(f"test_cold/{key}")
            row[f"cold_{key}"] = None if value is None or value != value else value
        for group in ("warm", "cold"):
            row[f"{group}_ndcg@20"] = block[model].get(f"test_{group}/ndcg@20")
        numbers["models"][model] = row
    checks = {"finding_holds": block["finding"]["holds"]}
    return {"config": {"argv": argv, **block["config"]}, "numbers": numbers, "checks": checks}


def quick_direction(payload: dict[str, Any]) -> bool:
    finding = payload["numbers"]["finding"]
    return bool(finding["cold_user_auc_gain"] > 0 and finding["cold_user_auc_gain_p_users"] < 0.05)


def _signed(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:+.4f}"


def _auc(cell: dict[str, Any]) -> str:
    return f"{cell['mean']:.4f}" + (f" ± {cell['sd']:.4f}" if cell.get("sd") is not None else "")


def tables(payload: dict[str, Any]) -> dict[str, str]:
    models = payload["numbers"]["models"]
    best_cold = max(models, key=lambda m: models[m]["cold_click_auc"]["mean"])
    lines = ["| model | warm click AUC | cold click AUC | cold per-user AUC | cold log loss | cold rating RMSE "
             "| test ndcg@20 (warm / cold) |", "|---|---|---|---|---|---|---|"]
    for model, title in MODELS.items():
        row = models[model]
        cold = _auc(row["cold_click_auc"])
        cells = [_auc(row["warm_click_auc"]), f"**{cold}**" if model == best_cold else cold]
        cells += ["–" if row[f"cold_{k}"] is None else f"{row[f'cold_{k}']:.4f}" for k in ("user_auc", "logloss", "rmse")]
        cells.append(f"{row['warm_ndcg@20']:.4f} / {row['cold_ndcg@20']:.4f}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    f = payload["numbers"]["finding"]
    gains = (f"Traits minus no traits (paired): cold-user click AUC {_signed(f['cold_click_auc_gain'])} over seeds "
             f"(p = {p_value(f['cold_click_auc_gain_p_seeds'])}), per-user {_signed(f['cold_user_auc_gain'])} over "
             f"{payload['numbers']['users'].get('cold', '?')} cold users (p = {p_value(f['cold_user_auc_gain_p_users'])}); "
             f"warm users {_signed(f['warm_click_auc_change'])} (p = {p_value(f['warm_click_auc_change_p_seeds'])} over "
             f"seeds; per-user {_signed(f['warm_user_auc_change'])}, p = {p_value(f['warm_user_auc_change_p_users'])}).")
    return {"table": "\n".join(lines), "gains": gains}
