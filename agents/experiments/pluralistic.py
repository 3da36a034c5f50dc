"""Pluralistic reward learning on the delivery board: K = 4 prototypes against one shared reward and
against per-person rewards, for people seen in training and for new people placed from M comparisons.

    python -m agents experiment pluralistic --seeds 5 --teacher partial_return --steps 200 --restarts 1 \
        --out docs/results/pluralistic_agents.json

Three populations per seed, each of `--seen` teachers (training) and `--unseen` new teachers of the
same types: K = 4 pure types; K = 4 Dirichlet(0.3) mixtures; and the negative control, one type
(K = 1 in the data; the model still has 4 prototypes). Every teacher answers M training pairs
(M in --ms), `--val-pairs` validation pairs and `--test-pairs` test pairs, labelled by a noisy
(Bradley-Terry) teacher of the chosen statistic; the model uses the same statistic.

For each M:
- pluralistic: prototypes and seen people's weights fitted on the seen people's M pairs each; the form
  (mixture / ideal point) and the prior strength on the weights chosen by the seen people's validation
  cross-entropy; unseen people placed from their M pairs with the prototypes frozen;
- shared: one reward fitted on the seen people's pairs (L2 chosen on validation), used for everyone;
- per-person: each person's own reward from their own M pairs, L2 chosen on validation.
Accuracy is against the teachers' noise-free preferences on test pairs (true ties left out); type
recovery is the adjusted Rand index of each person's dominant prototype against their dominant true
type; beside it, the best possible ARI from the same M labels (each person assigned to the true type
most likely to have given them, under the teachers' own noise model). Over seeds: mean ± sd and
paired t-tests (recsys.evaluation.significance).

Targets (issue 19): unseen-person accuracy at M = 10 at least 10 points above the shared reward on the
K = 4 pure-type population; ARI >= 0.8 there (unseen people at M = 10); on the control, the mixture
no worse than the shared reward (paired over seeds: not significantly below at p < 0.05, and its mean
within 1 point).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from agents.envs.delivery import delivery_board
from agents.preferences.pluralistic import (
    PairScorer,
    fit_per_person,
    fit_selected,
    pair_accuracy,
    people_batch,
    place_people,
)
from agents.preferences.policy_set import sample_policy_set
from agents.preferences.population import PopulationConfig, make_population, type_log_likelihoods
from recsys.errors import UserInputError
from recsys.evaluation.clustering import adjusted_rand_index

MODELS = ("pluralistic", "shared", "per_person")
POPULATIONS = {
    "pure": {"n_types": 4, "mixing": "pure"},
    "mixed": {"n_types": 4, "mixing": "dirichlet", "alpha": 0.3},
    "control": {"n_types": 1, "mixing": "pure"},
}
TARGET_M = 10
TARGET_GAIN, TARGET_ARI, CONTROL_MARGIN = 0.10, 0.8, 0.01


@dataclass(frozen=True)
class Settings:
    seeds: int = 5
    teacher: str = "partial_return"
    ms: tuple[int, ...] = (1, 2, 5, 10, 20)
    seen: int = 100
    unseen: int = 100
    val_pairs: int = 10
    test_pairs: int = 50
    n_types_model: int = 4
    restarts: int = 2
    steps: int = 300
    n_policies: int = 100
    populations: tuple[str, ...] = tuple(POPULATIONS)
    workers: int = 2
    # hyper-parameter grids, searched on validation pairs (a grid is widened when the choice sits on its edge)
    logit_l2_grid: tuple[float, ...] = (0.003, 0.03, 0.3, 3.0, 30.0)
    prototype_l2_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    l2_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)


def run_one(seed: int, population_name: str, settings: Settings) -> dict:
    """Every M for one (seed, population). Deterministic in (seed, population name)."""
    torch.set_num_threads(1)
    index = list(POPULATIONS).index(population_name)
    rng = np.random.default_rng([seed, index])
    torch.manual_seed(seed * 10 + index)
    mdp = delivery_board().tabular()
    config = PopulationConfig(statistic=settings.teacher, **POPULATIONS[population_name])
    seen = make_population(mdp, settings.seen, config, rng)
    unseen = make_population(mdp, settings.unseen, config, rng, type_weights=seen.type_weights)
    policy_set = sample_policy_set(mdp, settings.n_policies, rng) if settings.teacher == "regret" else None
    scorer = PairScorer(settings.teacher, policy_set, mdp.gamma)
    n_train = max(settings.ms)
    splits = {}
    for name, population in (("seen", seen), ("unseen", unseen)):
        labelled = population.label(n_train + settings.val_pairs + settings.test_pairs, rng)
        start = n_train + settings.val_pairs
        splits[name] = {
            "labelled": labelled,
            "validation": people_batch([d.subset(slice(n_train, start)) for d, _ in labelled], scorer),
            "test": people_batch([d.subset(slice(start, None)) for d, _ in labelled], scorer),
            "truth": torch.as_tensor(np.concatenate([exact[start:] for _, exact in labelled])),
            "types": population.dominant_type,
        }
    record: dict = {"seed": seed, "population": population_name, "by_m": {}}
    for m in settings.ms:
        train = {
            name: people_batch([d.subset(slice(0, m)) for d, _ in split["labelled"]], scorer)
            for name, split in splits.items()
        }
        model, chosen = fit_selected(
            settings.seen, scorer, train["seen"], splits["seen"]["validation"], settings.n_types_model,
            logit_l2_grid=settings.logit_l2_grid, prototype_l2_grid=settings.prototype_l2_grid,
            restarts=settings.restarts, seed=seed, steps=settings.steps,
        )
        shared, shared_chosen = fit_per_person(
            settings.seen, scorer, train["seen"], splits["seen"]["validation"], settings.l2_grid, settings.steps,
            shared=True,
        )
        seen_per_person, per_person_chosen = fit_per_person(
            settings.seen, scorer, train["seen"], splits["seen"]["validation"], settings.l2_grid, settings.steps
        )
        placed = place_people(model, scorer, train["unseen"], settings.unseen, logit_l2=chosen["logit_l2"])
        unseen_per_person, _ = fit_per_person(
            settings.unseen, scorer, train["unseen"], splits["unseen"]["validation"],
            l2_grid=(per_person_chosen["l2"],), steps=settings.steps,
        )
        models = {
            "seen": {"pluralistic": model, "shared": shared, "per_person": seen_per_person},
            "unseen": {"pluralistic": placed, "shared": shared, "per_person": unseen_per_person},
        }
        out: dict = {
            "accuracy": {},
            "ari": {},
            "chosen": {**chosen, "per_person_l2": per_person_chosen["l2"], "shared_l2": shared_chosen["l2"]},
        }
        for group, split in splits.items():
            n = settings.seen if group == "seen" else settings.unseen
            out["accuracy"][group] = {
                name: float(pair_accuracy(fitted, scorer, split["test"], split["truth"], n).nanmean())
                for name, fitted in models[group].items()
            }
            found = models[group]["pluralistic"].mixtures().argmax(1).detach().numpy()
            out["ari"][group] = adjusted_rand_index(split["types"], found)
            # the ceiling: each person assigned to the true type most likely to give their M labels
            population = seen if group == "seen" else unseen
            own = [d.subset(slice(0, m)) for d, _ in split["labelled"]]
            best = type_log_likelihoods(population, own).argmax(1)
            out.setdefault("oracle_ari", {})[group] = adjusted_rand_index(split["types"], best)
        record["by_m"][str(m)] = out
    return record


def run(settings: Settings, progress: bool = True) -> list[dict]:
    jobs = [(seed, name) for name in settings.populations for seed in range(settings.seeds)]
    if settings.workers <= 1:
        return [run_one(seed, name, settings) for seed, name in jobs]
    with ProcessPoolExecutor(settings.workers) as pool:
        futures = [pool.submit(run_one, seed, name, settings) for seed, name in jobs]
        return [f.result() for f in futures]


def summarize(records: list[dict], settings: Settings) -> dict:
    from recsys.evaluation.significance import paired_comparison

    out: dict = {}
    for name in settings.populations:
        rows = sorted((r for r in records if r["population"] == name), key=lambda r: r["seed"])
        block: dict = {}
        for m in map(str, settings.ms):
            cell: dict = {"accuracy": {}, "ari": {}, "tests": {}}
            for group in ("seen", "unseen"):
                per_seed = {k: [r["by_m"][m]["accuracy"][group][k] for r in rows] for k in MODELS}
                cell["accuracy"][group] = {k: _mean_sd(v) | {"per_seed": v} for k, v in per_seed.items()}
                aris = [r["by_m"][m]["ari"][group] for r in rows]
                cell["ari"][group] = _mean_sd(aris) | {"per_seed": aris}
                oracle = [r["by_m"][m]["oracle_ari"][group] for r in rows]
                cell.setdefault("oracle_ari", {})[group] = _mean_sd(oracle) | {"per_seed": oracle}
                if len(rows) >= 2:
                    cell["tests"][group] = {
                        f"pluralistic_minus_{other}": paired_comparison(
                            per_seed["pluralistic"], per_seed[other], n_resamples=2000
                        ).as_dict()
                        for other in ("shared", "per_person")
                    }
            cell["chosen"] = [r["by_m"][m]["chosen"] for r in rows]
            block[m] = cell
        out[name] = block
    return out


def _mean_sd(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def targets(summary: dict) -> dict:
    """The issue's targets, each with its measured value and whether it is met."""
    m = str(TARGET_M)
    out: dict = {}
    if "pure" in summary and m in summary["pure"]:
        acc = summary["pure"][m]["accuracy"]["unseen"]
        gain = acc["pluralistic"]["mean"] - acc["shared"]["mean"]
        out["unseen_gain_over_shared_at_m10"] = {"value": gain, "target": TARGET_GAIN, "met": gain >= TARGET_GAIN}
        ari = summary["pure"][m]["ari"]["unseen"]["mean"]
        out["type_ari_unseen_at_m10"] = {"value": ari, "target": TARGET_ARI, "met": ari >= TARGET_ARI}
    if "control" in summary:
        worst: dict | None = None
        for mm, cell in summary["control"].items():
            for group in ("seen", "unseen"):
                acc = cell["accuracy"][group]
                difference = acc["pluralistic"]["mean"] - acc["shared"]["mean"]
                test = cell["tests"].get(group, {}).get("pluralistic_minus_shared")
                significant_loss = bool(test and test["p_value"] < 0.05 and test["mean_difference"] < 0)
                ok = difference >= -CONTROL_MARGIN and not significant_loss
                if worst is None or difference < worst["value"]:
                    worst = {"value": difference, "m": int(mm), "group": group}
                out.setdefault("control_not_worse", {"met": True, "failures": []})
                if not ok:
                    out["control_not_worse"]["met"] = False
                    out["control_not_worse"]["failures"].append(
                        {"m": int(mm), "group": group, "difference": difference,
                         "p_value": None if test is None else test["p_value"]}
                    )
        out["control_not_worse"]["worst"] = worst
        out["control_not_worse"]["margin"] = CONTROL_MARGIN
    return out


def render_docs(doc: dict) -> str:
    """The markdown tables docs/results.md quotes (agents.experiments.docs_tables renders them)."""
    s = doc["settings"]
    lines = [
        f"**Teacher and model: {s['teacher'].replace('_', ' ')}** ({s['seeds']} seeds, {s['seen']} seen and "
        f"{s['unseen']} unseen people per population, {s['test_pairs']} test pairs each; pair accuracy in %, "
        "mean ± sd over seeds; p: paired t-test over seeds, pluralistic vs shared)",
        "",
    ]
    names = {"pure": "K = 4 pure types", "mixed": "K = 4, Dirichlet(0.3) mixtures", "control": "control: K = 1"}
    for population, block in doc["summary"].items():
        lines += [
            f"*{names.get(population, population)}*",
            "",
            "| M | people | pluralistic | shared | per-person | pluralistic - shared | p | type ARI | best possible ARI |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m, cell in block.items():
            for group in ("seen", "unseen"):
                acc = cell["accuracy"][group]
                test = cell["tests"].get(group, {}).get("pluralistic_minus_shared")
                p = "" if test is None else f"{test['p_value']:.2g}"
                gain = acc["pluralistic"]["mean"] - acc["shared"]["mean"]
                ari = cell["ari"][group]
                oracle = cell["oracle_ari"][group]
                ari_text, oracle_text = (
                    ("–", "–")
                    if population == "control"
                    else (f"{ari['mean']:.3f} ± {ari['sd']:.3f}", f"{oracle['mean']:.3f} ± {oracle['sd']:.3f}")
                )
                lines.append(
                    f"| {m} | {group} | {_pct(acc['pluralistic'])} | {_pct(acc['shared'])} | "
                    f"{_pct(acc['per_person'])} | {100 * gain:+.1f} | {p} | {ari_text} | {oracle_text} |"
                )
        lines.append("")
    lines += ["| target | measured | target | met |", "|---|---|---|---|"]
    for name, t in doc["targets"].items():
        if name == "control_not_worse":
            w = t["worst"]
            value = f"worst {100 * w['value']:+.1f} pts (M = {w['m']}, {w['group']})"
            target = f"no significant loss, mean within {100 * t['margin']:.0f} pt"
        elif "gain" in name:
            value, target = f"{100 * t['value']:+.1f} pts", f"≥ +{100 * t['target']:.0f} pts"
        else:
            value, target = f"{t['value']:.3f}", f"≥ {t['target']}"
        lines.append(f"| {name.replace('_', ' ')} | {value} | {target} | {'**yes**' if t['met'] else '**no**'} |")
    return "\n".join(lines)


def _pct(cell: dict) -> str:
    return f"{100 * cell['mean']:.1f} ± {100 * cell['sd']:.1f}"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    populations = list(doc["summary"])
    fig, axes = plt.subplots(2, len(populations), figsize=(4 * len(populations), 6.5), sharey=True, squeeze=False)
    for col, population in enumerate(populations):
        block = doc["summary"][population]
        ms = [int(m) for m in block]
        for row, group in enumerate(("seen", "unseen")):
            ax = axes[row, col]
            for model in MODELS:
                mean = np.array([block[str(m)]["accuracy"][group][model]["mean"] for m in ms])
                sd = np.array([block[str(m)]["accuracy"][group][model]["sd"] for m in ms])
                ax.errorbar(ms, 100 * mean, yerr=100 * sd, marker="o", capsize=3, label=model.replace("_", "-"))
            ax.set_xscale("log")
            ax.set_xticks(ms, [str(m) for m in ms])
            ax.set_title(f"{population}, {group} people", fontsize=10)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("comparisons per person (M)")
            if col == 0:
                ax.set_ylabel("test pair accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Pluralistic reward learning ({doc['settings']['teacher'].replace('_', ' ')})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agents experiment pluralistic", description=__doc__.split("\n\n")[0])
    d = Settings()
    parser.add_argument("--seeds", type=int, default=d.seeds)
    parser.add_argument("--teacher", choices=("partial_return", "regret"), default=d.teacher)
    parser.add_argument("--ms", default=",".join(map(str, d.ms)), help="comma-separated M values")
    parser.add_argument("--seen", type=int, default=d.seen)
    parser.add_argument("--unseen", type=int, default=d.unseen)
    parser.add_argument("--val-pairs", type=int, default=d.val_pairs)
    parser.add_argument("--test-pairs", type=int, default=d.test_pairs)
    parser.add_argument("--restarts", type=int, default=d.restarts)
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--n-policies", type=int, default=d.n_policies)
    parser.add_argument("--populations", default=",".join(d.populations), help=f"of {', '.join(POPULATIONS)}")
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--out", required=True, help="the results JSON (a .png plot is written beside it)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        ms = tuple(sorted({int(m) for m in args.ms.split(",")}))
    except ValueError:
        raise UserInputError(f"--ms must be comma-separated integers, got {args.ms!r}") from None
    populations = tuple(p.strip() for p in args.populations.split(","))
    unknown = [p for p in populations if p not in POPULATIONS]
    if unknown:
        raise UserInputError(f"unknown population {unknown[0]!r}; choose from {', '.join(POPULATIONS)}")
    if min(ms) < 1 or args.seeds < 1 or min(args.seen, args.unseen, args.val_pairs, args.test_pairs) < 1:
        raise UserInputError("--ms, --seeds, --seen, --unseen, --val-pairs and --test-pairs must be >= 1")
    settings = Settings(
        seeds=args.seeds, teacher=args.teacher, ms=ms, seen=args.seen, unseen=args.unseen,
        val_pairs=args.val_pairs, test_pairs=args.test_pairs, restarts=args.restarts, steps=args.steps,
        n_policies=args.n_policies, populations=populations, workers=args.workers,
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start, commit = time.time(), _commit()
    records = run(settings)
    summary = summarize(records, settings)
    doc = {
        "experiment": "pluralistic",
        "command": "python -m agents experiment pluralistic " + " ".join(argv),
        "settings": asdict(settings),
        "summary": summary,
        "targets": targets(summary),
        "per_seed": records,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "wall_seconds": round(time.time() - start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, out.with_suffix(".png"))
    print(render_docs(doc))
    print(f"\nwrote {out} and {out.with_suffix('.png')} ({doc['wall_seconds']:.0f} s)")
    return 0
