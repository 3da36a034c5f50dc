"""Gao et al. (ICLR 2024): does RLHG raise the human's goal achievement without costing the task?

    python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 3 --out DIR
    python -m agents experiment rlhg --env prefengine/RecSim-v0 --seeds 3 --out DIR

For each seed: train the base agent with PPO on the env reward alone (the task, or engagement in
the recommendation simulator); then fine-tune it twice for every alpha in --alphas: the *naive* agent
(PPO on env reward + alpha * human-goal reward, summed) and the *RLHG* agent (stage I: human-primitive
value under the frozen base agent; stage II: A_task + alpha * (G_H - V_phi - Delta_omega)). A fraction
beta of RLHG's episodes is agent-only (human terms off); --beta-schedule gives the naive agent the same
agent-only episodes (matched, the default), neither of them any (none), or RLHG alone (rlhg-only, the
first version of this experiment). Every agent of a seed is evaluated on the same --eval-episodes
episodes (a paired comparison); RLHG minus naive is tested per alpha with a paired t-test over seeds.

Writes DIR/results.json ({agent: {"human_goal": mean, "task_success": mean, ..., "per_seed": {...},
"ci95": {...}}} for base, naive and rlhg at --alpha, plus the alpha sweep and the comparison with the
base agent), DIR/alpha_tradeoff.png, DIR/report.md and the checkpoints under DIR/checkpoints/.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from agents.simulate import parse_json_object
from recsys.errors import UserInputError
from recsys.evaluation.significance import paired_t_test

log = logging.getLogger(__name__)

COLLAB, RECSIM = "prefengine/Collab-v0", "prefengine/RecSim-v0"
BETA_SCHEDULES = ("matched", "none", "rlhg-only")
# How each metric reads in the report; higher is better for all of them.
METRIC_NAMES = {"return": "return", "human_goal_return": "human_goal"}


@dataclass(frozen=True)
class Setting:
    """Everything one experiment run needs; the per-env defaults are in SETTINGS (configs/agents mirror them)."""

    env_kwargs: dict = field(default_factory=dict)
    ppo: dict = field(default_factory=dict)
    base_timesteps: int = 80_000
    finetune_timesteps: int = 60_000
    human_value_timesteps: int = 20_000
    alpha: float = 0.5
    alphas: tuple[float, ...] = (0.25, 0.5, 1.0)
    beta: float = 0.2
    # Who gets the beta agent-only episodes: "matched" (naive and RLHG, the same schedule), "none"
    # (neither: beta 0 for both) or "rlhg-only" (RLHG alone, as the first version of this experiment).
    beta_schedule: str = "matched"
    eval_episodes: int = 500
    accelerator: str = "cpu"  # Lightning's accelerator for the PPO fits (cpu, gpu, auto): small MLPs run best on CPU
    devices: int = 1


COLLAB_PPO = {"num_envs": 32, "num_steps": 16, "learning_rate": 1e-3, "update_epochs": 8, "num_minibatches": 4,
              "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.01, "clip_vloss": False, "hidden_sizes": (64, 64)}
# The recommender: a slate of 5 from 150 items (Plackett-Luce), sessions of a few steps (so gamma 0.95),
# a smaller entropy bonus since the slate's first-position entropy is about log(150).
RECSIM_PPO = {"num_envs": 32, "num_steps": 16, "learning_rate": 1e-3, "update_epochs": 4, "num_minibatches": 4,
              "gamma": 0.95, "gae_lambda": 0.95, "ent_coef": 0.003, "clip_vloss": False, "hidden_sizes": (128, 128),
              "action_distribution": "slate"}
SETTINGS: dict[str, Setting] = {
    # 160,000 base steps: with the pick-up action (a trap while the policy is random: a carried item
    # must reach the human) 80,000 left the base agent unconverged (task success about 0.9).
    COLLAB: Setting(ppo=COLLAB_PPO, base_timesteps=160_000),
    RECSIM: Setting(ppo=RECSIM_PPO, base_timesteps=150_000, finetune_timesteps=60_000, human_value_timesteps=16_384,
                    alpha=1.0, alphas=(0.5, 1.0, 2.0)),
}


def run_task(task: dict) -> dict:
    """Train one agent (base, continued, naive or rlhg), save it and evaluate it. Runs in a worker process."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import CSVLogger

    from agents.ppo import PPO
    from agents.rlhg import RLHG
    from agents.simulate import run_episodes, summarize

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    setting = Setting(**task["setting"])
    out, kind, seed, alpha = Path(task["out"]), task["kind"], task["seed"], task.get("alpha")
    name = f"{kind}_seed{seed}" if alpha is None else f"{kind}_alpha{alpha:g}_seed{seed}"
    common = dict(env_id=task["env_id"], env_kwargs=setting.env_kwargs, seed=seed, **setting.ppo)
    reused = Path(task["reuse_dir"]) / "checkpoints" / f"{name}.ckpt" if task.get("reuse_dir") else None
    if kind in ("base", "continued") and reused is not None and reused.exists():
        return evaluate_saved(task, name, reused)
    if kind == "base":
        module = PPO(total_timesteps=setting.base_timesteps, **common)
    elif kind == "continued":  # the control: as much more training as the fine-tunes get, env reward only
        module = PPO(total_timesteps=setting.finetune_timesteps, init_from=task["base_checkpoint"], **common)
    elif kind == "naive":
        module = PPO(total_timesteps=setting.finetune_timesteps, human_reward_coef=alpha,
                     agent_only_fraction=naive_beta(setting), init_from=task["base_checkpoint"], **common)
    else:
        module = RLHG(base_checkpoint=task["base_checkpoint"], alpha=alpha, beta=rlhg_beta(setting),
                      human_value_timesteps=setting.human_value_timesteps,
                      total_timesteps=setting.finetune_timesteps, **common)
    start = time.perf_counter()
    trainer = pl.Trainer(accelerator=setting.accelerator, devices=setting.devices, max_epochs=-1, logger=CSVLogger(out / "logs", name=name, version=""),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1)
    trainer.fit(module)
    checkpoint = out / "checkpoints" / f"{name}.ckpt"
    trainer.save_checkpoint(checkpoint)
    module.eval()
    # Every agent of a seed meets the same evaluation episodes.
    records = run_episodes(task["env_id"], setting.env_kwargs, module.policy(seed=seed), setting.eval_episodes,
                           seed=1_000_000 + seed)
    metrics = {METRIC_NAMES.get(k, k): v["mean"] for k, v in summarize(records).items()}
    return {**task, "name": name, "checkpoint": str(checkpoint), "metrics": metrics,
            "agent_only": module.agent_only.counts(), "seconds": time.perf_counter() - start}


def evaluate_saved(task: dict, name: str, checkpoint: Path) -> dict:
    """A base or continued agent of an earlier run of the same setting (they do not depend on the beta
    schedule): evaluated again on this run's episodes instead of trained again."""
    from agents.checkpoints import load_agent
    from agents.simulate import run_episodes, summarize

    setting, seed = Setting(**task["setting"]), task["seed"]
    start = time.perf_counter()
    module = load_agent(checkpoint)
    records = run_episodes(task["env_id"], setting.env_kwargs, module.policy(seed=seed), setting.eval_episodes,
                           seed=1_000_000 + seed)
    metrics = {METRIC_NAMES.get(k, k): v["mean"] for k, v in summarize(records).items()}
    return {**task, "name": name, "checkpoint": str(checkpoint), "metrics": metrics, "reused": True,
            "agent_only": module.agent_only.counts(), "seconds": time.perf_counter() - start}


def naive_beta(setting: Setting) -> float:
    """The naive agent's share of agent-only episodes under the setting's beta schedule."""
    return setting.beta if setting.beta_schedule == "matched" else 0.0


def rlhg_beta(setting: Setting) -> float:
    return 0.0 if setting.beta_schedule == "none" else setting.beta


def run_tasks(env_id: str, setting: Setting, seeds: list[int], out: Path, workers: int,
              reuse_dir: Path | None = None) -> list[dict]:
    """Each seed's base agent first, then its fine-tunes; up to `workers` processes at a time."""
    base = {"env_id": env_id, "setting": asdict(setting), "out": str(out),
            "reuse_dir": str(reuse_dir) if reuse_dir else None}
    finetunes = [("continued", None)] + [(kind, alpha) for alpha in setting.alphas for kind in ("rlhg", "naive")]
    total = len(seeds) * (1 + len(finetunes))
    results: list[dict] = []
    with tqdm(total=total, desc="rlhg experiment", unit="agent") as bar:
        def done(result: dict) -> None:
            results.append(result)
            bar.set_postfix_str(f"{result['name']} human_goal={result['metrics'].get('human_goal', 0):.3g}")
            bar.update(1)

        def followups(result: dict) -> list[dict]:
            return [{**base, "kind": kind, "alpha": alpha, "seed": result["seed"],
                     "base_checkpoint": result["checkpoint"]} for kind, alpha in finetunes]

        if workers <= 1:
            for seed in seeds:
                base_result = run_task({**base, "kind": "base", "alpha": None, "seed": seed})
                done(base_result)
                for task in followups(base_result):
                    done(run_task(task))
            return results
        # spawn: forking a process that already runs torch threads can deadlock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: set[Future] = {pool.submit(run_task, {**base, "kind": "base", "alpha": None, "seed": s})
                                    for s in seeds}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    result = future.result()
                    done(result)
                    if result["kind"] == "base":
                        pending |= {pool.submit(run_task, task) for task in followups(result)}
    return results


def aggregate(runs: list[dict], seeds: list[int]) -> dict:
    """Mean, per-seed values and a t-interval over seeds for every metric of every group of runs."""
    from scipy import stats

    by_seed = {r["seed"]: r["metrics"] for r in sorted(runs, key=lambda r: r["seed"])}
    out: dict = {"per_seed": {}, "ci95": {}}
    for metric in sorted(set().union(*(m.keys() for m in by_seed.values()))):
        values = np.array([by_seed[s][metric] for s in seeds if metric in by_seed.get(s, {})], dtype=float)
        mean = float(values.mean())
        out[metric] = mean
        out["per_seed"][metric] = values.tolist()
        if len(values) > 1:
            half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
            out["ci95"][metric] = [mean - half, mean + half]
        else:
            out["ci95"][metric] = [mean, mean]
    return out


def compare(agent: dict, reference: dict) -> dict:
    """Relative change of the human goal and ratio of the task metric (task success, else the env return)
    against a reference agent: of the seed means, and per seed."""
    task_metric = "task_success" if "task_success" in reference else "return"

    def change(a: float, b: float) -> float | None:
        return float(a / b - 1.0) if b else None

    return {"human_goal_relative_gain": change(agent["human_goal"], reference["human_goal"]),
            "human_goal_relative_gain_per_seed": [change(a, b) for a, b in zip(agent["per_seed"]["human_goal"],
                                                                               reference["per_seed"]["human_goal"])],
            "task_metric": task_metric,
            "task_ratio": float(agent[task_metric] / reference[task_metric]) if reference[task_metric] else None,
            "task_ratio_per_seed": [a / b if b else None for a, b in zip(agent["per_seed"][task_metric],
                                                                        reference["per_seed"][task_metric])]}


def paired_test(a: list[float], b: list[float], level: float = 0.05) -> dict:
    """Paired t-test over seeds of a - b (the project's one paired t-test): mean and sd of the differences,
    p, and ahead / tied / behind. One seed gives no test (p NaN; 1 when the runs are equal: tied either way)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    p = paired_t_test(a, b)[1] if len(diff) > 1 else (1.0 if not diff.any() else float("nan"))
    verdict = "tied" if not p < level else ("ahead" if diff.mean() > 0 else "behind")
    return {"mean_difference": float(diff.mean()), "sd_difference": sd, "per_seed_difference": diff.tolist(),
            "p_value": p, "verdict": verdict, "seeds": len(diff)}


def rlhg_versus_naive(results: dict, task_metric: str) -> dict:
    """At every alpha, RLHG minus naive on the human goal and the task metric (paired over seeds)."""
    out = {}
    for alpha, rlhg in results["alpha_sweep"]["rlhg"].items():
        naive = results["alpha_sweep"]["naive"][alpha]
        out[alpha] = {metric: paired_test(rlhg["per_seed"][metric], naive["per_seed"][metric])
                      for metric in ("human_goal", task_metric)}
    return out


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers: what the run costs on unshared cores."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def checks(results: dict) -> dict[str, bool]:
    """The paper's claims as pass/fail: with a task-success metric (the collaborative env), RLHG raises the
    human goal by >= 20% over the base agent and keeps >= 95% of its task success; otherwise (the
    recommender) RLHG raises the users' goal over the engagement-only policy, base and equally trained."""
    versus_base = results["comparison_with_base"]["rlhg"]
    if versus_base["task_metric"] == "task_success":
        return {"human_goal_gain_at_least_20pct": bool((versus_base["human_goal_relative_gain"] or 0) >= 0.20),
                "task_success_at_least_95pct_of_base": bool((versus_base["task_ratio"] or 0) >= 0.95)}
    rlhg = results["rlhg"]["human_goal"]
    return {"human_goal_above_base": bool(rlhg > results["base"]["human_goal"]),
            "human_goal_above_continued": bool(rlhg > results["continued"]["human_goal"])}


def build_results(runs: list[dict], env_id: str, setting: Setting, seeds: list[int], wall: float,
                  workers: int) -> dict:
    def group(kind: str, alpha: float | None = None) -> dict:
        chosen = [r for r in runs if r["kind"] == kind and (alpha is None or r["alpha"] == alpha)]
        return aggregate(chosen, seeds)

    results: dict = {"base": group("base"), "continued": group("continued")}
    for kind in ("naive", "rlhg"):
        results[kind] = {**group(kind, setting.alpha), "alpha": setting.alpha}
    results["alpha_sweep"] = {kind: {f"{a:g}": group(kind, a) for a in setting.alphas} for kind in ("naive", "rlhg")}
    for reference in ("base", "continued"):
        results[f"comparison_with_{reference}"] = {kind: compare(results[kind], results[reference])
                                                   for kind in ("naive", "rlhg")}
    results["checks"] = checks(results)
    results["rlhg_vs_naive"] = rlhg_versus_naive(results, results["comparison_with_base"]["rlhg"]["task_metric"])
    results["meta"] = {"env": env_id, "seeds": seeds, "setting": asdict(setting), "wall_seconds": wall,
                       "cpu_seconds": cpu_seconds(), "workers": workers, "cpus": os.cpu_count(),
                       "beta_schedule": setting.beta_schedule,
                       "agent_only_fraction": {"naive": naive_beta(setting), "rlhg": rlhg_beta(setting)},
                       "agent_only_counts": {r["name"]: r["agent_only"] for r in runs},
                       "seconds_per_agent": {r["name"]: r["seconds"] for r in runs}}
    return results


def plot_tradeoff(results: dict, path: Path, env_id: str) -> None:
    """Human goal and the task metric against alpha, and the two against each other (the trade-off)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task_metric = results["comparison_with_base"]["rlhg"]["task_metric"]
    references = (("base", "black", "--", "base (env reward only)"), ("continued", "grey", ":", "base trained on as long"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for kind, colour in (("rlhg", "#c44e52"), ("naive", "#4c72b0")):
        sweep = results["alpha_sweep"][kind]
        alphas = [float(a) for a in sweep]
        for ax, metric in zip(axes[:2], ("human_goal", task_metric)):
            means = [sweep[a][metric] for a in sweep]
            errors = [[m - sweep[a]["ci95"][metric][0] for a, m in zip(sweep, means)],
                      [sweep[a]["ci95"][metric][1] - m for a, m in zip(sweep, means)]]
            ax.errorbar(alphas, means, yerr=errors, marker="o", capsize=3, color=colour, label=kind)
        xs, ys = [sweep[a][task_metric] for a in sweep], [sweep[a]["human_goal"] for a in sweep]
        axes[2].plot(xs, ys, marker="o", color=colour, label=kind)
        for alpha, x, y in zip(sweep, xs, ys):
            axes[2].annotate(f"alpha {alpha}", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    for name, colour, style, label in references:
        for ax, metric in zip(axes[:2], ("human_goal", task_metric)):
            ax.axhline(results[name][metric], color=colour, linestyle=style, label=label)
        axes[2].plot(results[name][task_metric], results[name]["human_goal"], marker="s", color=colour,
                     linestyle="none", label=label)
    for ax, metric in zip(axes[:2], ("human_goal", task_metric)):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("alpha (weight of the human terms)")
        ax.set_ylabel(metric)
    axes[2].set_xlabel(task_metric)
    axes[2].set_ylabel("human_goal")
    axes[2].set_title("trade-off (up and right is better)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"{env_id}: human goal and {task_metric} (mean and 95% CI over {len(results['meta']['seeds'])} seeds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict, path: Path, command: str) -> None:
    meta = results["meta"]
    task_metric = results["comparison_with_base"]["rlhg"]["task_metric"]
    metrics = ["human_goal", task_metric] + [m for m in ("return", "length") if m != task_metric]
    lines = [f"# RLHG experiment: {meta['env']}", "", f"Command: `{command}`", "",
             f"Seeds {meta['seeds']}; {meta['setting']['eval_episodes']} evaluation episodes per agent and seed; "
             f"alpha = {results['rlhg']['alpha']:g}, beta = {meta['setting']['beta']:g} (schedule "
             f"{meta['beta_schedule']}: agent-only share naive {meta['agent_only_fraction']['naive']:g}, "
             f"RLHG {meta['agent_only_fraction']['rlhg']:g}); wall time "
             f"{meta['wall_seconds'] / 60:.1f} min with {meta['workers']} worker process(es) on {meta['cpus']} CPUs "
             f"({meta['cpu_seconds'] / 60:.1f} CPU-minutes in all).", "",
             "Agents: base = PPO on the env reward; continued = the base trained on for the fine-tuning budget, "
             "env reward only (the fair control); naive = fine-tuned on env reward + alpha * human-goal reward; "
             "rlhg = fine-tuned with RLHG. Mean over seeds [95% t-interval].", "",
             "| agent | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for agent in ("base", "continued", "naive", "rlhg"):
        cells = [f"{results[agent][m]:.3f} [{results[agent]['ci95'][m][0]:.3f}, {results[agent]['ci95'][m][1]:.3f}]"
                 for m in metrics if m in results[agent]]
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    for reference in ("base", "continued"):
        lines += ["", f"Against {reference} (of the seed means; per seed in brackets):", ""]
        for kind in ("naive", "rlhg"):
            c = results[f"comparison_with_{reference}"][kind]
            gains = ", ".join("n/a" if g is None else f"{g:+.1%}" for g in c["human_goal_relative_gain_per_seed"])
            ratios = ", ".join("n/a" if r is None else f"{r:.3f}" for r in c["task_ratio_per_seed"])
            gain = "n/a" if c["human_goal_relative_gain"] is None else f"{c['human_goal_relative_gain']:+.1%}"
            ratio = "n/a" if c["task_ratio"] is None else f"{c['task_ratio']:.3f}"
            lines.append(f"- {kind}: human goal {gain} [{gains}]; {task_metric} ratio {ratio} [{ratios}]")
    lines += ["", "Checks: " + ", ".join(f"{k} = {'PASS' if v else 'FAIL'}" for k, v in results["checks"].items()), "",
              "## Alpha sweep", "", "| alpha | rlhg human_goal | rlhg " + task_metric + " | naive human_goal | naive "
              + task_metric + " |", "|---|---|---|---|---|"]
    for alpha in results["alpha_sweep"]["rlhg"]:
        r, n = results["alpha_sweep"]["rlhg"][alpha], results["alpha_sweep"]["naive"][alpha]
        lines.append(f"| {alpha} | {r['human_goal']:.3f} | {r[task_metric]:.3f} | {n['human_goal']:.3f} | {n[task_metric]:.3f} |")
    lines += ["", "## RLHG minus naive (paired t-test over seeds)", "", render_versus_naive(results), "",
              "![alpha trade-off](alpha_tradeoff.png)", ""]
    path.write_text("\n".join(lines))


def render_versus_naive(results: dict) -> str:
    """Markdown table of RLHG minus naive at every alpha: mean ± sd of the per-seed differences, p, verdict."""
    task_metric = results["comparison_with_base"]["rlhg"]["task_metric"]
    lines = [f"| alpha | human goal: RLHG - naive (mean ± sd) | p | verdict | {task_metric}: RLHG - naive | p | verdict |",
             "|---|---|---|---|---|---|---|"]
    for alpha, tests in results["rlhg_vs_naive"].items():
        cells = []
        for metric in ("human_goal", task_metric):
            t = tests[metric]
            cells += [f"{t['mean_difference']:+.3f} ± {t['sd_difference']:.3f}", f"{t['p_value']:.3g}", t["verdict"]]
        lines.append(f"| {alpha} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def docs_record(runs: dict[str, dict], commands: dict[str, str], machine: str) -> dict:
    """What docs/results/rlhg.json keeps of one env's runs under several beta schedules ({schedule: results}):
    the commands, sizes, seeds, per-seed values, the paired tests and whether each finding holds."""
    first = next(iter(runs.values()))
    task_metric = first["comparison_with_base"]["rlhg"]["task_metric"]
    metrics = ("human_goal", task_metric)
    record: dict = {"env": first["meta"]["env"], "task_metric": task_metric, "machine": machine,
                    "seeds": first["meta"]["seeds"], "schedules": {}}
    for schedule, results in runs.items():
        meta = results["meta"]
        per_seed = {"base": {m: results["base"]["per_seed"][m] for m in metrics},
                    "continued": {m: results["continued"]["per_seed"][m] for m in metrics}}
        for kind in ("naive", "rlhg"):
            for alpha, group in results["alpha_sweep"][kind].items():
                per_seed[f"{kind}_alpha{alpha}"] = {m: group["per_seed"][m] for m in metrics}
        versus_continued = {f"{kind}_alpha{alpha}": {m: paired_test(per_seed[f"{kind}_alpha{alpha}"][m],
                                                                    per_seed["continued"][m]) for m in metrics}
                            for kind in ("naive", "rlhg") for alpha in results["alpha_sweep"][kind]}
        steps = {name: counts for name, counts in meta["agent_only_counts"].items()
                 if name.startswith(("naive", "rlhg"))}
        record["schedules"][schedule] = {
            "command": commands[schedule], "setting": meta["setting"],
            "agent_only_fraction": meta["agent_only_fraction"], "agent_only_counts": steps,
            "wall_seconds": meta["wall_seconds"], "cpu_seconds": meta["cpu_seconds"], "workers": meta["workers"],
            "per_seed": per_seed, "rlhg_vs_naive": results["rlhg_vs_naive"], "versus_continued": versus_continued}
    if {"matched", "none"} <= set(runs):  # what the beta episodes do to each agent (same bases, same seeds)
        matched, none = record["schedules"]["matched"]["per_seed"], record["schedules"]["none"]["per_seed"]
        record["beta_effect"] = {name: {m: paired_test(matched[name][m], none[name][m]) for m in metrics}
                                 for name in matched if name.startswith(("naive", "rlhg"))}
    tests = [t[m] for r in record["schedules"].values() for t in r["rlhg_vs_naive"].values() for m in metrics]
    adjusted = holm([t["p_value"] for t in tests])
    record["findings"] = {
        "rlhg_ahead_of_naive_on_human_goal_or_task": {
            # every schedule, alpha and metric is one comparison: Holm's correction over all of them
            "holds": any(t["mean_difference"] > 0 and p < 0.05 for t, p in zip(tests, adjusted)),
            "nominal_verdicts": [t["verdict"] for t in tests], "holm_adjusted_p": adjusted,
            "comparisons": len(tests)},
        "rlhg_raises_human_goal_over_continued": {
            "holds": all(r["versus_continued"][name]["human_goal"]["verdict"] == "ahead"
                         for r in record["schedules"].values() for name in r["versus_continued"]
                         if name.startswith("rlhg"))}}
    return record


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _mean_sd(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def render_docs(doc: dict) -> str:
    """The markdown tables of docs/results.md's RLHG section, from docs/results/rlhg.json."""
    out = []
    for env in doc["envs"].values():
        task = env["task_metric"]
        out += [f"**{env['env']}** ({len(env['seeds'])} seeds, mean ± sd over seeds; RLHG - naive: paired t-test "
                "over seeds)", "",
                f"| beta schedule | alpha | naive human goal | RLHG human goal | RLHG - naive | p | "
                f"naive {task} | RLHG {task} | RLHG - naive | p |", "|---|---|---|---|---|---|---|---|---|---|"]
        for schedule, run in env["schedules"].items():
            for alpha, tests in run["rlhg_vs_naive"].items():
                naive, rlhg = run["per_seed"][f"naive_alpha{alpha}"], run["per_seed"][f"rlhg_alpha{alpha}"]
                cells = []
                for metric in ("human_goal", task):
                    t = tests[metric]
                    cells += [_mean_sd(naive[metric]), _mean_sd(rlhg[metric]),
                              f"{t['mean_difference']:+.3f} ({t['verdict']})", f"{t['p_value']:.2g}"]
                out.append(f"| {schedule} | {alpha} | " + " | ".join(cells) + " |")
        base, continued = (env["schedules"]["matched"]["per_seed"][k] for k in ("base", "continued"))
        out += ["", f"Base: human goal {_mean_sd(base['human_goal'])}, {task} {_mean_sd(base[task])}; "
                f"continued: human goal {_mean_sd(continued['human_goal'])}, {task} {_mean_sd(continued[task])}.", ""]
    return "\n".join(out)


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserInputError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise UserInputError(f"{name} needs at least one value, all >= 0 (got {text!r})")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agents experiment rlhg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=COLLAB, help=f"one of {sorted(SETTINGS)}")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--alpha", type=float, default=None, help="the alpha reported as 'rlhg' and 'naive'")
    parser.add_argument("--alphas", default=None, help="comma-separated alpha sweep (must include --alpha)")
    parser.add_argument("--beta", type=float, default=None, help="fraction of agent-only episodes")
    parser.add_argument("--beta-schedule", choices=BETA_SCHEDULES, default=None,
                        help="who gets the beta agent-only episodes: matched = naive and RLHG alike (default), "
                             "none = neither (beta 0 for both), rlhg-only = RLHG alone (the unmatched first version)")
    parser.add_argument("--base-timesteps", type=int, default=None)
    parser.add_argument("--finetune-timesteps", type=int, default=None)
    parser.add_argument("--human-value-timesteps", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--env-kwargs", default=None, help="JSON object of env constructor arguments")
    parser.add_argument("--ppo", default=None, help="JSON object overriding PPO hyper-parameters of every agent")
    parser.add_argument("--reuse-base", type=Path, default=None,
                        help="output folder of an earlier run of the same setting and seeds: its base and continued "
                             "checkpoints are evaluated instead of trained again (e.g. to run another --beta-schedule)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel training processes")
    return parser.parse_args(argv)


def setting_from_args(args: argparse.Namespace) -> Setting:
    if args.env not in SETTINGS:
        raise UserInputError(f"--env {args.env!r}: the rlhg experiment runs in {sorted(SETTINGS)}")
    setting = SETTINGS[args.env]
    changes: dict = {}
    for name in ("alpha", "beta", "beta_schedule", "base_timesteps", "finetune_timesteps", "human_value_timesteps", "eval_episodes"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.alphas is not None:
        changes["alphas"] = parse_floats(args.alphas, "--alphas")
    if args.env_kwargs:
        changes["env_kwargs"] = {**setting.env_kwargs, **parse_json_object(args.env_kwargs, "--env-kwargs")}
    if args.ppo:
        changes["ppo"] = {**setting.ppo, **parse_json_object(args.ppo, "--ppo")}
    setting = replace(setting, **changes)
    if setting.alpha not in setting.alphas:
        setting = replace(setting, alphas=tuple(sorted({*setting.alphas, setting.alpha})))
    if args.seeds < 1:
        raise UserInputError(f"--seeds must be >= 1, got {args.seeds}")
    if not 0.0 <= setting.beta <= 1.0:
        raise UserInputError(f"--beta is a fraction of episodes, got {setting.beta}")
    return setting


def check_reusable(folder: Path, env_id: str, setting: Setting) -> None:
    """The earlier run must have trained its base and continued agents exactly as this one would."""
    path = folder / "results.json"
    if not path.exists():
        raise UserInputError(f"--reuse-base {folder}: no results.json (not a finished rlhg experiment)")
    try:
        meta = json.loads(path.read_text())["meta"]
        earlier = meta["setting"]
    except (ValueError, KeyError):
        raise UserInputError(f"{path}: not the results of an rlhg experiment") from None
    keys = ("env_kwargs", "ppo", "base_timesteps", "finetune_timesteps")
    now = json.loads(json.dumps(asdict(setting)))  # tuples as lists, as in the file
    differ = [k for k in keys if earlier.get(k) != now[k]] + (["env"] if meta.get("env") != env_id else [])
    if differ:
        raise UserInputError(f"--reuse-base {folder}: its run differs in {', '.join(differ)}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    setting = setting_from_args(args)
    out = Path(args.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    if args.reuse_base is not None:
        check_reusable(args.reuse_base, args.env, setting)
    runs = run_tasks(args.env, setting, seeds, out, args.workers, args.reuse_base)
    results = build_results(runs, args.env, setting, seeds, time.perf_counter() - start, args.workers)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_tradeoff(results, out / "alpha_tradeoff.png", args.env)
    command = "python -m agents experiment rlhg " + " ".join(argv)
    write_report(results, out / "report.md", command)
    print((out / "report.md").read_text())
    return 0
