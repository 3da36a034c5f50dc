"""Knox et al. (TMLR 2024), the synthetic experiment: learn rewards from regret-labelled preferences
with the regret model and with the partial-return model, and compare the policies they induce.

    python -m agents experiment regret-vs-return --mdps 30 --prefs 300,1000,3000,10000 --seed 0 --out DIR

For the delivery board and `--mdps` random boards from the paper's parameter grid: sample segment
pairs, label them by a deterministic regret teacher (ties 0.5), fit each preference model on the
first n pairs for every n in --prefs, plan greedily for the learned reward and score the policy by
its scaled return under the true reward, (mean V^pi - mean V^unif) / (mean V* - mean V^unif).
A policy is near-optimal when its scaled return exceeds 0.9.

Writes DIR/results.json ({model: {n_prefs: {"near_optimal": fraction, "scaled_return": mean}}}),
DIR/per_mdp.json (every MDP's numbers and learned weights), DIR/regret_vs_return.png and DIR/report.md.

With `--seeds 0,1,2` instead of `--seed`, every seed draws its own boards, preferences and initial
weights and writes those files to DIR/seed<k>/; DIR/over_seeds.json and DIR/report.md hold the
mean ± sd over seeds, every seed's value, and paired t-tests over seeds of regret minus partial return.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from agents.envs.board import FEATURES, Board
from agents.envs.delivery import delivery_board
from agents.envs.random_mdp import random_board
from agents.planning import solve
from agents.preferences.learner import PreferenceLearner, RewardLearningContext
from agents.preferences.policy_set import sample_policy_set
from agents.preferences.segments import sample_segment_pairs
from agents.preferences.teachers import Teacher
from recsys.evaluation.significance import paired_t_test

MODELS = ("regret", "partial_return")
NEAR_OPTIMAL = 0.9
# The true delivery ordering: goal > coin > 0 > gas > mud > sheep (weights divided by |gas|).
DELIVERY_ORDER = ("goal", "coin", "zero", "gas", "mud", "sheep")


@dataclass(frozen=True)
class ExperimentConfig:
    mdps: int = 30
    prefs: tuple[int, ...] = (300, 1000, 3000, 10000)
    seed: int = 0
    include_delivery: bool = True
    segment_length: int = 3
    n_policies: int = 100
    remove_optimal_policy: bool = True
    steps: int = 1000
    lr: float = 0.5
    temperature: float = 0.001
    workers: int = 2


def run_mdp(index: int, config: ExperimentConfig) -> dict:
    """Everything for one MDP (index 0 is the delivery board when included). Deterministic in (seed, index)."""
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared machine
    board_seq, data_seq, torch_seq = np.random.SeedSequence([config.seed, index]).spawn(3)
    board = _board(index, config, np.random.default_rng(board_seq))
    mdp = board.tabular()
    rng = np.random.default_rng(data_seq)
    solution = solve(mdp)
    policy_set = sample_policy_set(mdp, config.n_policies, rng, remove_optimal=config.remove_optimal_policy)
    pairs = sample_segment_pairs(mdp, max(config.prefs), config.segment_length, rng)
    data = Teacher(statistic="regret").label(mdp, pairs, rng, solution)
    context = RewardLearningContext(mdp, policy_set)
    record = {
        "name": board.name,
        "shape": list(board.shape),
        "true_weights": board.reward_weights.tolist(),
        "n_policies": len(policy_set),
        "tie_fraction": float(np.mean(data.labels == 0.5)),
        "scaled_return": {m: {} for m in MODELS},
        "learned_weights": {m: {} for m in MODELS},
    }
    torch_seed = int(torch_seq.generate_state(1)[0])
    for n in config.prefs:
        for model in MODELS:
            torch.manual_seed(torch_seed)  # the same initial weights for both models
            learner = PreferenceLearner(preference_model=model, temperature=config.temperature).attach(
                context
            )
            learner.fit_full_batch(data.subset(slice(0, n)), config.steps, lr=config.lr)
            record["scaled_return"][model][str(n)] = learner.scaled_return()
            record["learned_weights"][model][str(n)] = learner.reward_weights().tolist()
    return record


def _board(index: int, config: ExperimentConfig, rng: np.random.Generator) -> Board:
    if config.include_delivery and index == 0:
        return delivery_board()
    return random_board(rng, name=f"random-{index}")


def run_experiment(config: ExperimentConfig, progress: bool = True) -> list[dict]:
    return run_seeds(config, [config.seed], progress)[config.seed]


def run_seeds(config: ExperimentConfig, seeds: list[int], progress: bool = True) -> dict[int, list[dict]]:
    """{seed: records}: every (seed, MDP) is one job, so the workers stay busy across seeds."""
    from tqdm import tqdm

    indices = list(range(config.mdps + int(config.include_delivery)))
    jobs = [(seed, i) for seed in seeds for i in indices]
    bar = tqdm(total=len(jobs), desc="regret-vs-return MDPs", unit="mdp", disable=not progress)
    records: dict[tuple[int, int], dict] = {}
    if config.workers <= 1:
        for seed, i in jobs:
            records[seed, i] = run_mdp(i, replace(config, seed=seed))
            bar.update()
    else:
        with ProcessPoolExecutor(config.workers) as pool:
            futures = {pool.submit(run_mdp, i, replace(config, seed=seed)): (seed, i) for seed, i in jobs}
            for future in as_completed(futures):
                records[futures[future]] = future.result()
                bar.update()
    bar.close()
    return {seed: [records[seed, i] for i in indices] for seed in seeds}


def summarize(records: list[dict], prefs: tuple[int, ...]) -> dict:
    """{model: {n_prefs: {"near_optimal": fraction, "scaled_return": mean}}} over all MDPs."""
    summary: dict = {}
    for model in MODELS:
        summary[model] = {}
        for n in prefs:
            returns = np.array([r["scaled_return"][model][str(n)] for r in records])
            summary[model][str(n)] = {
                "near_optimal": float(np.mean(returns > NEAR_OPTIMAL)),
                "scaled_return": float(np.mean(returns)),
            }
    return summary


def delivery_ordering(weights: list[float]) -> tuple[dict[str, float], bool]:
    """Weights scaled by |gas| and whether goal > coin > 0 > gas > mud > sheep holds."""
    w = np.asarray(weights, dtype=np.float64)
    scaled = dict(zip(FEATURES, (w / abs(w[0])).tolist())) if w[0] != 0 else dict(zip(FEATURES, w.tolist()))
    values = [0.0 if key == "zero" else scaled[key] for key in DELIVERY_ORDER]
    return scaled, bool(all(a > b for a, b in zip(values, values[1:])))


def _quantiles(records: list[dict], model: str, prefs: tuple[int, ...]) -> np.ndarray:
    """(len(prefs), 3): the 25th, 50th and 75th percentile of the scaled return over MDPs."""
    return np.array(
        [np.percentile([r["scaled_return"][model][str(n)] for r in records], (25, 50, 75)) for n in prefs]
    )


def plot(summary: dict, records: list[dict], prefs: tuple[int, ...], path: Path) -> None:
    """Left: the fraction of near-optimal MDPs. Right: the median scaled return with its
    interquartile band (the mean, in results.json, swings with single catastrophic rewards)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = {"regret": "regret model", "partial_return": "partial-return model"}
    for model, marker in zip(MODELS, "os"):
        line = left.plot(
            prefs, [summary[model][str(n)]["near_optimal"] for n in prefs], marker=marker, label=labels[model]
        )
        q = _quantiles(records, model, prefs)
        right.plot(prefs, q[:, 1], marker=marker, color=line[0].get_color(), label=labels[model])
        right.fill_between(prefs, q[:, 0], q[:, 2], color=line[0].get_color(), alpha=0.15)
    left.set_ylabel(f"fraction of MDPs near-optimal (scaled return > {NEAR_OPTIMAL})")
    left.set_ylim(0, 1.02)
    right.set_ylabel("scaled return: median and interquartile range")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("number of preferences")
        ax.set_xticks(prefs, [str(n) for n in prefs])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"Regret-labelled preferences, {len(records)} MDPs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    out: Path, config: ExperimentConfig, summary: dict, records: list[dict], wall_s: float
) -> Path:
    lines = [
        "# Regret vs partial return (Knox et al., TMLR 2024)",
        "",
        f"{len(records)} MDPs ({'the delivery board and ' if config.include_delivery else ''}{config.mdps} random boards), "
        f"preferences labelled by a deterministic regret teacher, segments of {config.segment_length} steps, "
        f"{config.steps} full-batch Adam steps (lr {config.lr}), policy set of up to {config.n_policies} policies"
        f"{' without the optimal one' if config.remove_optimal_policy else ''}, seed {config.seed}. "
        f"Wall time {wall_s:.0f} s with {config.workers} worker(s).",
        "",
        "| preferences | near-optimal: regret | near-optimal: partial return | mean scaled return: regret "
        "| mean scaled return: partial return | median: regret | median: partial return |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {m: _quantiles(records, m, config.prefs)[:, 1] for m in MODELS}
    for i, n in enumerate(config.prefs):
        r, p = summary["regret"][str(n)], summary["partial_return"][str(n)]
        lines.append(
            f"| {n} | {r['near_optimal']:.3f} | {p['near_optimal']:.3f} | {r['scaled_return']:.3f} | {p['scaled_return']:.3f} "
            f"| {medians['regret'][i]:.3f} | {medians['partial_return'][i]:.3f} |"
        )
    worst = min(
        (r["scaled_return"][m][str(n)], r["name"], m, n)
        for r in records
        for m in MODELS
        for n in config.prefs
    )
    lines += [
        "",
        f"A policy is near-optimal when its scaled return exceeds {NEAR_OPTIMAL}. The mean is pulled down by rare "
        f"catastrophes, rewards whose greedy policy loops forever (worst: {worst[0]:.1f} on {worst[1]}, "
        f"{worst[2]} model, {worst[3]} preferences).",
    ]
    if config.include_delivery:
        n = str(max(config.prefs))
        lines += ["", f"Delivery board, weights learned from {n} preferences, divided by |gas|:", ""]
        lines += [
            "| model | " + " | ".join(FEATURES) + " | goal > coin > 0 > gas > mud > sheep |",
            "|---" * 8 + "|",
        ]
        for model in MODELS:
            scaled, holds = delivery_ordering(records[0]["learned_weights"][model][n])
            lines.append(
                f"| {model} | "
                + " | ".join(f"{scaled[f]:.2f}" for f in FEATURES)
                + f" | {'yes' if holds else 'no'} |"
            )
        lines.append("| true | " + " | ".join(f"{w:.0f}" for w in records[0]["true_weights"]) + " | yes |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _spread(values: list[float]) -> dict:
    """Mean, sample sd (None for one seed) and every seed's value."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if len(array) > 1 else None,
            "per_seed": array.tolist()}


# The per-seed statistics summarised over seeds (each computed over that seed's MDPs).
SEED_STATISTICS = ("near_optimal", "mean_scaled_return", "median_scaled_return")


def per_seed_statistics(records: list[dict], prefs: tuple[int, ...]) -> dict:
    """{n_prefs: {model: {statistic: value}}} for one seed's MDPs."""
    out: dict = {}
    for n in prefs:
        out[str(n)] = {}
        for model in MODELS:
            returns = np.array([r["scaled_return"][model][str(n)] for r in records])
            out[str(n)][model] = {"near_optimal": float(np.mean(returns > NEAR_OPTIMAL)),
                                  "mean_scaled_return": float(returns.mean()),
                                  "median_scaled_return": float(np.median(returns))}
    return out


def summarize_seeds(by_seed: dict[int, list[dict]], prefs: tuple[int, ...]) -> dict:
    """Mean ± sd over seeds of each seed's statistics, per-seed values, and a paired t-test over seeds
    of regret minus partial return for every statistic and number of preferences."""
    seeds = sorted(by_seed)
    stats_by_seed = {seed: per_seed_statistics(by_seed[seed], prefs) for seed in seeds}
    out: dict = {"seeds": seeds, "mdps_per_seed": len(by_seed[seeds[0]]), "by_prefs": {}, "paired": {}}
    for n in map(str, prefs):
        out["by_prefs"][n] = {model: {stat: _spread([stats_by_seed[s][n][model][stat] for s in seeds])
                                      for stat in SEED_STATISTICS} for model in MODELS}
        out["paired"][n] = {}
        for stat in SEED_STATISTICS:
            regret = out["by_prefs"][n]["regret"][stat]["per_seed"]
            partial = out["by_prefs"][n]["partial_return"][stat]["per_seed"]
            difference = (np.asarray(regret) - np.asarray(partial)).tolist()
            t, p = paired_t_test(regret, partial) if len(seeds) > 1 else (None, None)
            out["paired"][n][stat] = {"mean_difference": float(np.mean(difference)),
                                      "sd_difference": float(np.std(difference, ddof=1)) if len(seeds) > 1 else None,
                                      "per_seed_difference": difference, "t_statistic": t, "p_value": p}
    delivery = {seed: next((r for r in by_seed[seed] if r["name"] == "delivery"), None) for seed in seeds}
    if all(record is not None for record in delivery.values()):
        out["delivery_ordering_holds"] = {
            n: {model: [delivery_ordering(delivery[s]["learned_weights"][model][n])[1] for s in seeds]
                for model in MODELS} for n in map(str, prefs)}
    return out


def _cell(spread: dict) -> str:
    return f"{spread['mean']:.3f}" if spread["sd"] is None else f"{spread['mean']:.3f} ± {spread['sd']:.3f}"


def write_seeds_report(out: Path, config: ExperimentConfig, summary: dict, wall_s: float) -> Path:
    seeds = summary["seeds"]
    lines = [
        "# Regret vs partial return (Knox et al., TMLR 2024), over seeds",
        "",
        f"Seeds {', '.join(map(str, seeds))}: each draws its own {summary['mdps_per_seed']} MDPs"
        f"{' (the delivery board with its own preferences, and random boards)' if config.include_delivery else ''}, "
        f"preferences and initial weights; {config.steps} full-batch Adam steps (lr {config.lr}). "
        f"Mean ± sd over seeds of each seed's share of near-optimal MDPs (scaled return > {NEAR_OPTIMAL}) and "
        f"median scaled return; p: paired t-test over seeds of regret minus partial return. "
        f"Wall time {wall_s:.0f} s with {config.workers} worker(s).",
        "",
        "| preferences | near-optimal: regret | near-optimal: partial return | difference | p "
        "| median: regret | median: partial return |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, row in summary["by_prefs"].items():
        paired = summary["paired"][n]["near_optimal"]
        p = "–" if paired["p_value"] is None else f"{paired['p_value']:.2g}"
        lines.append(f"| {n} | {_cell(row['regret']['near_optimal'])} | {_cell(row['partial_return']['near_optimal'])} "
                     f"| {paired['mean_difference']:+.3f} | {p} | {_cell(row['regret']['median_scaled_return'])} "
                     f"| {_cell(row['partial_return']['median_scaled_return'])} |")
    lines += ["", "Per seed (near-optimal share, regret / partial return):", ""]
    for n, row in summary["by_prefs"].items():
        pairs = zip(row["regret"]["near_optimal"]["per_seed"], row["partial_return"]["near_optimal"]["per_seed"])
        lines.append(f"- {n} preferences: " + ", ".join(f"seed {s} {r:.3f} / {p:.3f}" for s, (r, p) in zip(seeds, pairs)))
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def render_docs(doc: dict) -> str:
    """docs/results.md's table for a run recorded under docs/results/ (summary plus paired counts)."""
    lines = ["| preferences | near-optimal: regret | near-optimal: partial return | only regret near-optimal "
             "| only partial return near-optimal | exact McNemar p |", "|---:|---:|---:|---:|---:|---:|"]
    for n, paired in doc["paired_near_optimal"].items():
        r, p = doc["summary"]["regret"][n]["near_optimal"], doc["summary"]["partial_return"][n]["near_optimal"]
        lines.append(f"| {n} | {r:.2f} | {p:.2f} | {paired['regret_only_near_optimal']} "
                     f"| {paired['partial_return_only_near_optimal']} | {paired['exact_mcnemar_p']:.1g} |")
    return "\n".join(lines) + "\n"


def _parse_prefs(text: str) -> tuple[int, ...]:
    try:
        prefs = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--prefs must be comma-separated integers, got {text!r}") from None
    if not prefs or prefs[0] < 1:
        raise argparse.ArgumentTypeError(f"--prefs needs positive counts, got {text!r}")
    return prefs


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs distinct seeds, got {text!r}")
    return seeds


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents experiment regret-vs-return", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--mdps", type=int, default=30, help="number of random MDPs (besides the delivery board)"
    )
    parser.add_argument(
        "--prefs",
        type=_parse_prefs,
        default=(300, 1000, 3000, 10000),
        help="comma-separated preference counts",
    )
    seeding = parser.add_mutually_exclusive_group()
    # default None, not 0: argparse would not see an explicit `--seed 0` beside --seeds
    seeding.add_argument("--seed", type=int, default=None,
                         help="same seed, same numbers (whatever --workers); default 0")
    seeding.add_argument("--seeds", type=_parse_seeds, default=None,
                         help="comma-separated seeds: one run each in DIR/seed<k>/, mean ± sd and paired tests "
                              "over seeds in DIR/over_seeds.json")
    parser.add_argument(
        "--out", type=Path, default=Path("artifacts/experiments/regret-vs-return"), help="output folder"
    )
    parser.add_argument(
        "--steps", type=_positive, default=ExperimentConfig.steps, help="full-batch Adam steps per fit"
    )
    parser.add_argument("--lr", type=_positive_float, default=ExperimentConfig.lr, help="Adam step size")
    parser.add_argument("--segment-length", type=_positive, default=ExperimentConfig.segment_length)
    parser.add_argument("--n-policies", type=_positive, default=ExperimentConfig.n_policies)
    parser.add_argument(
        "--temperature",
        type=_positive_float,
        default=ExperimentConfig.temperature,
        help="of the soft maximum over policies",
    )
    parser.add_argument(
        "--keep-optimal-policy",
        action="store_true",
        help="do not remove the true optimal policy from the set",
    )
    parser.add_argument("--no-delivery", action="store_true", help="random MDPs only")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=ExperimentConfig.workers,
        help="processes (MDPs run in parallel; numbers do not change)",
    )
    args = parser.parse_args(argv)
    if args.mdps < 0 or (args.mdps == 0 and args.no_delivery):
        parser.error("need at least one MDP")
    config = ExperimentConfig(
        mdps=args.mdps,
        prefs=args.prefs,
        seed=args.seed if args.seed is not None else (args.seeds or [0])[0],
        include_delivery=not args.no_delivery,
        segment_length=args.segment_length,
        n_policies=args.n_policies,
        remove_optimal_policy=not args.keep_optimal_policy,
        steps=args.steps,
        lr=args.lr,
        temperature=args.temperature,
        workers=min(args.workers, os.cpu_count() or 1),
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or [config.seed]
    started = time.perf_counter()
    by_seed = run_seeds(config, seeds)
    wall_s = time.perf_counter() - started
    for seed in seeds:
        folder = out / f"seed{seed}" if args.seeds else out
        folder.mkdir(parents=True, exist_ok=True)
        write_run(folder, replace(config, seed=seed), by_seed[seed], wall_s, quiet=bool(args.seeds))
    if args.seeds:
        summary = summarize_seeds(by_seed, config.prefs)
        (out / "over_seeds.json").write_text(json.dumps(
            {"config": {**asdict(config), "seeds": seeds}, "wall_seconds": wall_s, **summary}, indent=1) + "\n")
        report = write_seeds_report(out, config, summary, wall_s)
        print(report.read_text())
        print(f"wrote {out / 'over_seeds.json'}, {report} and one folder per seed ("
              + ", ".join(str(out / f"seed{s}") for s in seeds) + ")")
    return 0


def write_run(out: Path, config: ExperimentConfig, records: list[dict], wall_s: float, quiet: bool = False) -> None:
    """One seed's results.json, per_mdp.json, plot and report."""
    summary = summarize(records, config.prefs)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "per_mdp.json").write_text(
        json.dumps({"config": asdict(config), "wall_seconds": wall_s, "mdps": records}, indent=1) + "\n"
    )
    plot(summary, records, config.prefs, out / "regret_vs_return.png")
    report = write_report(out, config, summary, records, wall_s)
    if not quiet:
        print(report.read_text())
        print(f"wrote {out / 'results.json'}, {out / 'per_mdp.json'}, {out / 'regret_vs_return.png'}, {report}")
