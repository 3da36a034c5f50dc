"""The personality comparison: the same ranker with and without traits (and MF), warm vs cold users.

    python -m recsys.experiments.compare_personality -c configs/recsys/compare_personality.yaml --out DIR

It is `recsys.experiments.compare` (same YAML keys, and the same `run_one`, `summarize` and report
pieces of `recsys.experiments.runs`) with three differences that the generic command cannot express:

- the data come from `PersonalityDataModule` (click/rating examples, profiles, cold users
  whose every row is held out), so the ranking truth has "<split>_warm" / "<split>_cold" views;
- every run is also scored on the held-out examples (`recsys.models.personality_metrics`): click
  AUC (overall and per user), log loss, rating RMSE and MAE, for warm and cold users;
- the paired tests cover those too: per-user AUC (averaged over seeds) paired over users, and
  the run means paired over seeds, the first model minus each other.

metrics.json gains "pointwise" ({model: {metric: mean}}, per seed, paired tests) and "finding":
the first model's gain in cold-user click AUC over `finding.baseline`, and its warm-user change.
report.md gains their tables; click_auc.png plots click AUC by user group and model.
With `sweep: {option: [values]}` the whole comparison runs once per value
(`recsys.experiments.compare_personality_sweep`: e.g. the world's `trait_influence`, with 0 as a negative control).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ArgumentError
from tqdm.auto import tqdm

from recsys.data.personality_datamodule import PersonalityDataModule
from recsys.errors import UserInputError
from recsys.evaluation.report import plot_metric_vs_k
from recsys.evaluation.significance import paired_comparison
from recsys.experiments.runs import (
    ModelSpec,
    RunResult,
    compare_parser,
    load_model_spec,
    plain,
    point_markdown,
    run_one,
    summarize,
)
from recsys.models.personality_metrics import PointwiseResult, pointwise_metrics

log = logging.getLogger(__name__)

HEADLINE = ("auc", "user_auc", "logloss", "rmse", "mae")
GROUP_SPLITS = ("test", "test_warm", "test_cold")


def _parser():
    parser = compare_parser()
    parser.prog = "python -m recsys.experiments.compare_personality"
    parser.description = "Personality ranker with and without traits (and references), warm vs cold users."
    parser.add_argument("--experiment", type=str, default="personality", help="must be 'personality'")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (1 avoids oversubscription on shared CPUs)")
    parser.add_argument("--finding", type=dict[str, Any], default={},
                        help="{baseline: model name, min_cold_gain: 0.02}: the claim checked in metrics.json")
    return parser


def _best_model(spec: ModelSpec, run_dir: Path):
    path = run_dir / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise UserInputError(f"{run_dir}: the run saved no best checkpoint (did validation run?)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec.model_class.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    model.eval()
    return model


def _mean_pointwise(runs: list[PointwiseResult]) -> PointwiseResult:
    keys = runs[0].metrics
    metrics = {k: float(np.nanmean([r.metrics[k] for r in runs])) if any(np.isfinite(r.metrics[k]) for r in runs)
               else float("nan") for k in keys}
    per_user, users = {}, {}
    for key in runs[0].per_user:
        split = key.split("/", 1)[0]
        if all(np.array_equal(r.users[split], runs[0].users[split]) for r in runs):
            per_user[key] = np.mean([r.per_user[key] for r in runs], axis=0)
            users[split] = runs[0].users[split]
    return PointwiseResult(metrics, per_user, users)


def _pointwise_tests(runs: dict[str, list[PointwiseResult]], averaged: dict[str, PointwiseResult]) -> dict[str, Any]:
    names = list(runs)
    first = names[0]
    tests: dict[str, Any] = {}
    for other in names[1:]:
        per_key: dict[str, Any] = {}
        for key in averaged[first].metrics:
            entry: dict[str, Any] = {}
            a_seeds = [r.metrics[key] for r in runs[first]]
            b_seeds = [r.metrics[key] for r in runs[other]]
            if len(a_seeds) >= 2 and len(a_seeds) == len(b_seeds) and np.all(np.isfinite(a_seeds + b_seeds)):
                entry["over_seeds"] = paired_comparison(a_seeds, b_seeds).as_dict()
            if key in averaged[first].per_user and key in averaged[other].per_user:
                split = key.split("/", 1)[0]
                _, in_a, in_b = np.intersect1d(averaged[first].users[split], averaged[other].users[split],
                                               assume_unique=True, return_indices=True)
                if len(in_a) >= 2:
                    entry["over_users"] = paired_comparison(averaged[first].per_user[key][in_a],
                                                            averaged[other].per_user[key][in_b]).as_dict()
            if entry:
                per_key[key] = entry
        tests[other] = per_key
    return {"reference": first, "difference": f"{first} minus model", "tests": tests}


def finding(block: dict[str, Any], reference: str, baseline: str, min_gain: float) -> dict[str, Any]:
    """Does `reference` beat `baseline` on cold-user click AUC by `min_gain`, without hurting warm users?"""
    tests = block["paired_tests"]["tests"].get(baseline)
    if tests is None:
        raise UserInputError(f"compare: finding.baseline {baseline!r} is not one of the compared models")
    # With one seed there is no over-seeds test; the gain is then the difference of the two runs.
    cold, warm = tests.get("test_cold/auc", {}), tests.get("test_warm/auc", {})
    cold_users, warm_users = tests.get("test_cold/user_auc", {}), tests.get("test_warm/user_auc", {})
    gain = cold["over_seeds"]["mean_difference"] if "over_seeds" in cold else \
        block[reference]["test_cold/auc"] - block[baseline]["test_cold/auc"]
    warm_change = warm["over_seeds"]["mean_difference"] if "over_seeds" in warm else \
        block[reference]["test_warm/auc"] - block[baseline]["test_warm/auc"]
    # "Does not hurt": the warm-user difference is not significantly negative, over seeds and over users.
    hurts = any(t.get("mean_difference", 0) < 0 and t.get("p_value", 1) < 0.05
                for t in (warm.get("over_seeds", {}), warm_users.get("over_users", {})))
    # The gain must also be significant over users (per-user AUC, seeds averaged): 3 seeds alone have little power.
    significant = cold_users.get("over_users", {}).get("p_value", 1.0) < 0.05
    return {"reference": reference, "baseline": baseline, "cold_click_auc_gain": gain,
            "cold_click_auc_gain_p_seeds": cold.get("over_seeds", {}).get("p_value", float("nan")),
            "cold_user_auc_gain": cold_users.get("over_users", {}).get("mean_difference", float("nan")),
            "cold_user_auc_gain_p_users": cold_users.get("over_users", {}).get("p_value", float("nan")),
            "warm_click_auc_change": warm_change,
            "warm_click_auc_change_p_seeds": warm.get("over_seeds", {}).get("p_value", float("nan")),
            "warm_user_auc_change": warm_users.get("over_users", {}).get("mean_difference", float("nan")),
            "warm_user_auc_change_p_users": warm_users.get("over_users", {}).get("p_value", float("nan")),
            "min_cold_gain": min_gain, "holds": bool(gain >= min_gain and significant and not hurts)}


def _fmt(values: list[float]) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "–"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def pointwise_markdown(block: dict[str, Any]) -> str:
    per_seed = block["per_seed"]
    lines = ["Click and rating metrics on the held-out examples (mean ± sd over seeds):", "",
             "| model | " + " | ".join(f"{s}/{m}" for s in GROUP_SPLITS for m in ("auc", "logloss", "rmse")) + " |",
             "|---|" + "---|" * (3 * len(GROUP_SPLITS))]
    for name, values in per_seed.items():
        cells = [_fmt(values.get(f"{s}/{m}", [])) for s in GROUP_SPLITS for m in ("auc", "logloss", "rmse")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tests = block["paired_tests"]
    lines += ["", f"Paired tests, {tests['reference']} minus each model (AUC over seeds; per-user AUC over users, "
                  "averaged over seeds first):", "",
              "| model | metric | difference | 95% CI | p (seeds) | p (users) |", "|---|---|---|---|---|---|"]
    for other, per_key in tests["tests"].items():
        for key in [f"{s}/{m}" for s in GROUP_SPLITS for m in ("auc", "user_auc")]:
            entry = per_key.get(key)
            if not entry:
                continue
            main = entry.get("over_seeds") or entry.get("over_users")
            lines.append(f"| {other} | {key} | {main['mean_difference']:+.4f} | [{main['ci_low']:+.4f}, "
                         f"{main['ci_high']:+.4f}] | {entry.get('over_seeds', {}).get('p_value', float('nan')):.2g} | "
                         f"{entry.get('over_users', {}).get('p_value', float('nan')):.2g} |")
    return "\n".join(lines) + "\n"


def plot_click_auc(block: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(block["per_seed"])
    groups = [("test_warm/auc", "warm users"), ("test_cold/auc", "cold users")]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(names)
    lowest = 0.5
    for j, name in enumerate(names):
        means = [np.nanmean(block["per_seed"][name].get(key, [np.nan])) for key, _ in groups]
        errors = [np.nanstd(block["per_seed"][name].get(key, [np.nan])) for key, _ in groups]
        axis.bar(np.arange(len(groups)) + j * width, means, width, yerr=errors, label=name, capsize=3)
        lowest = min([lowest, *(m for m in means if np.isfinite(m))])
    axis.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, [label for _, label in groups])
    axis.set_ylabel("click AUC (test)")
    axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")  # chance
    axis.set_ylim(lowest - 0.05, None)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str]) -> int:
    from recsys.training.train import log_to_console

    log_to_console()
    try:
        config = _parser().parse_args(argv)
    except ArgumentError as error:
        from recsys.training.train import _one_line

        raise UserInputError(f"compare: {_one_line(error)}") from None
    if config.experiment != "personality":
        raise UserInputError(f"compare: experiment must be 'personality', got {config.experiment!r}")
    for key in ("models", "data", "sweep", "trainer", "finding"):
        config[key] = plain(config[key])
    if config.threads < 1:
        raise UserInputError(f"compare: threads must be >= 1, got {config.threads}")
    torch.set_num_threads(config.threads)
    specs = [load_model_spec(name, raw) for name, raw in config.models.items()]
    if len(specs) < 2 or not config.seeds:
        raise UserInputError("compare: give at least two models and one seed")
    for noisy in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if config.sweep:  # one comparison per value of one data option (or world field), summarized there
        from recsys.experiments.compare_personality_sweep import run_sweep

        return run_sweep(config, specs, run_comparison)
    run_comparison(config, specs, dict(config.data), Path(config.out))
    print(f"wrote {Path(config.out) / 'metrics.json'} and {Path(config.out) / 'report.md'}")
    return 0


def run_comparison(config, specs: list[ModelSpec], data: dict[str, Any], out: Path) -> dict[str, Any]:
    """Every model over every seed on one data set; writes metrics.json, report.md and plots to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    datamodule = PersonalityDataModule(**data)
    groups = datamodule.user_groups()
    runs: dict[str, list[RunResult]] = {}
    pointwise: dict[str, list[PointwiseResult]] = {}
    progress = tqdm(total=len(specs) * len(config.seeds), desc="compare", unit="run")
    for spec in specs:
        runs[spec.name], pointwise[spec.name] = [], []
        for seed in config.seeds:
            progress.set_postfix_str(f"{spec.name} seed {seed}")
            run_dir = out / "runs" / spec.name / f"seed{seed}"
            runs[spec.name].append(run_one(datamodule, spec, seed, run_dir, dict(config.trainer),
                                                   config.monitor, config.patience, list(config.ks)))
            model = _best_model(spec, run_dir)
            pointwise[spec.name].append(pointwise_metrics(model, datamodule.pointwise_truth("test"), groups))
            progress.update()
    progress.close()

    block, averaged = summarize(runs, list(config.ks))
    ranking_markdown = point_markdown(block, averaged, config.metric, list(config.seeds))
    means = {name: _mean_pointwise(results) for name, results in pointwise.items()}
    point_block = {name: dict(sorted(result.metrics.items())) for name, result in means.items()}
    point_block["per_seed"] = {name: {k: [r.metrics[k] for r in results] for k in means[name].metrics}
                               for name, results in pointwise.items()}
    point_block["paired_tests"] = _pointwise_tests(pointwise, means)
    block["pointwise"] = point_block
    names = [s.name for s in specs]
    baseline = config.finding.get("baseline", names[1])
    block["finding"] = finding(point_block, names[0], baseline, float(config.finding.get("min_cold_gain", 0.02)))
    block["users"] = {group: int(mask.sum()) for group, mask in groups.items()}
    block["config"] = {"models": {s.name: {"class_path": f"{s.model_class.__module__}.{s.model_class.__name__}",
                                           "init_args": s.init_args, "data": s.sampling, "max_epochs": s.max_epochs}
                                  for s in specs},
                       "seeds": list(config.seeds), "data": dict(data), "trainer": dict(config.trainer),
                       "monitor": config.monitor, "patience": config.patience, "ks": list(config.ks),
                       "threads": config.threads}
    (out / "metrics.json").write_text(json.dumps(block, indent=2, default=float) + "\n")
    plot_metric_vs_k(averaged, out / "metric_vs_k.png", metrics=("ndcg", "recall", "precision", "mrr"))
    plot_click_auc(point_block, out / "click_auc.png")
    verdict = block["finding"]
    markdown = [f"# Personality comparison: {', '.join(names)}", "",
                f"Data: {datamodule.split.train.describe()}; {datamodule.split.describe()}; "
                f"{block['users']['warm']} warm users, {block['users']['cold']} cold users (every row held out). "
                f"Seeds {list(config.seeds)}; checkpoint selection by `{config.monitor}`.", "",
                f"**Finding** ({verdict['reference']} vs {verdict['baseline']}): cold-user click AUC "
                f"{verdict['cold_click_auc_gain']:+.4f} (p over seeds {verdict['cold_click_auc_gain_p_seeds']:.2g}; "
                f"per-user AUC {verdict['cold_user_auc_gain']:+.4f}, p over users "
                f"{verdict['cold_user_auc_gain_p_users']:.2g}); warm-user click AUC "
                f"{verdict['warm_click_auc_change']:+.4f} (p {verdict['warm_click_auc_change_p_seeds']:.2g}; per-user "
                f"{verdict['warm_user_auc_change']:+.4f}, p {verdict['warm_user_auc_change_p_users']:.2g}). "
                f"Claim (gain >= {verdict['min_cold_gain']}, significant over users, warm not significantly worse): "
                f"{'holds' if verdict['holds'] else 'does NOT hold'}.", "",
                pointwise_markdown(point_block), "![click AUC](click_auc.png)", "",
                "## Ranking (full ranking over all items)", "",
                ranking_markdown,
                "![metric vs K](metric_vs_k.png)", ""]
    (out / "report.md").write_text("\n".join(markdown))
    return block


if __name__ == "__main__":
    import sys

    try:
        raise SystemExit(main(sys.argv[1:]))
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
