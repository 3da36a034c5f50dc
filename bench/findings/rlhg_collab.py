"""RLHG in the collaborative gridworld: the fine-tuned agent raises its human partner's own goal achievement
over the task-trained base agent while keeping the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.findings import rlhg_common
from bench.findings.rlhg_common import interval

NAME = "rlhg_collab"
TITLE = "RLHG in the collaborative gridworld (Collab-v0)"
COMMAND = "python -m agents experiment rlhg --env prefengine/Collab-v0 --seeds 3 --out artifacts/findings/rlhg_collab"
FULL_MINUTES = 15  # 5.5 min on 2 idle cores, up to 29 min with the cores shared
RULE = ("RLHG (alpha 0.5) raises the human's goal achievement by >= 20% over the base agent and keeps >= 95% of "
        "its task success (means over 3 seeds)")
QUICK_CHECK = rlhg_common.QUICK_CHECK
ROWS = {"base": "base", "continued": "continued", "naive": "naive, alpha {alpha:g}", "rlhg": "**RLHG, alpha {alpha:g}**"}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    return rlhg_common.run(COMMAND, workdir, quick, alpha=0.5)


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    lines = ["| agent | human goal (goal items the human gets) | task success | items by agent | items handed | length |",
             "|---|---|---|---|---|---|"]
    for agent, title in ROWS.items():
        row = numbers["agents"][agent]
        lines.append(f"| {title.format(alpha=numbers['alpha'])} | {interval(row['human_goal'])} | "
                     f"{interval(row['task_success'])} | {row['items_by_agent']['mean']:.2f} | "
                     f"{row['items_handed']['mean']:.2f} | {row['length']['mean']:.1f} |")
    out = {"agents": "\n".join(lines)}
    versus = numbers["comparison_with_base"]["rlhg"]
    out["gain"] = (f"RLHG vs the base agent: human goal {versus['human_goal_relative_gain']:+.1%} (per seed "
                   + ", ".join(f"{g:+.1%}" for g in versus["human_goal_relative_gain_per_seed"])
                   + f"), task success ratio {versus['task_ratio']:.3f} (per seed "
                   + ", ".join(f"{r:.3f}" for r in versus["task_ratio_per_seed"]) + ").")
    sweep = numbers["alpha_sweep"]
    lines = ["| alpha | RLHG human goal | RLHG task success | RLHG items handed | naive human goal | naive task success "
             "| naive items handed |", "|---|---|---|---|---|---|---|"]
    for alpha in sweep["rlhg"]:
        r, n = sweep["rlhg"][alpha], sweep["naive"][alpha]
        lines.append(f"| {alpha} | {r['human_goal']:.3f} | {r['task_success']:.3f} | {r['items_handed']:.2f} "
                     f"| {n['human_goal']:.3f} | {n['task_success']:.3f} | {n['items_handed']:.2f} |")
    out["alpha_sweep"] = "\n".join(lines)
    return out
