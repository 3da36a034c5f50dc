"""The RLHG findings (Gao et al., ICLR 2024), shared by the collaborative gridworld and the recommendation
simulator: one experiment entry point (`python -m agents experiment rlhg`), two envs, two rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.findings.core import arguments

AGENTS = ("base", "continued", "naive", "rlhg")
# A tiny budget (the test suite's own): the experiment runs end to end and writes its schema.
# One seed, one alpha (the reported one): four agents.
QUICK_ARGV = ["--seeds", "1", "--base-timesteps", "1024", "--finetune-timesteps", "512",
              "--human-value-timesteps", "256", "--eval-episodes", "10",
              "--ppo", '{"num_envs": 4, "num_steps": 16, "num_minibatches": 2}', "--workers", "1"]
QUICK_CHECK = ("schema only: a few thousand PPO steps teach the agents nothing the rule could measure "
               "(the full run trains 160,000 + 60,000 steps per agent)")


def run(command: str, workdir: Path, quick: bool, alpha: float) -> dict[str, Any]:
    from agents.experiments.rlhg import main

    argv = arguments(command, "rlhg")
    if quick:
        argv = [*argv[:argv.index("--seeds")], *QUICK_ARGV, "--alpha", f"{alpha:g}", "--alphas", f"{alpha:g}"]
    assert main([*argv, "--out", str(workdir)]) == 0
    results = json.loads((workdir / "results.json").read_text())
    numbers: dict[str, Any] = {"agents": {}, "alpha": results["rlhg"]["alpha"]}
    for agent in AGENTS:
        block = results[agent]
        numbers["agents"][agent] = {metric: {"mean": block[metric], "per_seed": block["per_seed"][metric],
                                             "ci95": block["ci95"][metric]} for metric in block["per_seed"]}
    numbers["alpha_sweep"] = {kind: {alpha: {metric: block[metric] for metric in block["per_seed"]}
                                     for alpha, block in sweep.items()}
                              for kind, sweep in results["alpha_sweep"].items()}
    numbers["comparison_with_base"] = results["comparison_with_base"]
    numbers["comparison_with_continued"] = results["comparison_with_continued"]
    meta = results["meta"]
    config = {"argv": argv, "setting": meta["setting"], "seeds": meta["seeds"], "workers": meta["workers"],
              "cpu_seconds": meta["cpu_seconds"]}
    return {"config": config, "numbers": numbers, "checks": results["checks"]}


def interval(cell: dict[str, Any], digits: int = 3) -> str:
    low, high = cell["ci95"]
    return f"{cell['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
