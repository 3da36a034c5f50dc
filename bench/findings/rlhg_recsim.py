"""RLHG in the recommendation simulator: the fine-tuned recommender raises users' own goal achievement over the
engagement-only recommender (base and equally trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.findings import rlhg_common
from bench.findings.rlhg_common import interval

NAME = "rlhg_recsim"
TITLE = "RLHG in the recommendation simulator (RecSim-v0)"
COMMAND = "python -m agents experiment rlhg --env prefengine/RecSim-v0 --seeds 3 --out artifacts/findings/rlhg_recsim"
FULL_MINUTES = 15  # 13.3 min documented with 2 workers at load average about 4
RULE = ("RLHG (alpha 1) raises the users' own goal per session above both the engagement-only base policy and the "
        "equally trained engagement-only policy (means over 3 seeds)")
QUICK_CHECK = rlhg_common.QUICK_CHECK
ROWS = {"base": "engagement-only (base)", "continued": "engagement-only, trained as long (continued)",
        "naive": "naive, alpha {alpha:g}", "rlhg": "**RLHG, alpha {alpha:g}**"}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    return rlhg_common.run(COMMAND, workdir, quick, alpha=1.0)


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    numbers = payload["numbers"]
    lines = ["| policy | users' goal per session | engagement (clicks) | truly liked clicks | liked share of clicks |",
             "|---|---|---|---|---|"]
    for agent, title in ROWS.items():
        row = numbers["agents"][agent]
        lines.append(f"| {title.format(alpha=numbers['alpha'])} | {interval(row['human_goal'])} | "
                     f"{interval(row['clicks'])} | {row['liked_clicks']['mean']:.2f} | "
                     f"{row['liked_share_of_clicks']['mean']:.3f} |")
    out = {"agents": "\n".join(lines)}
    gains = []
    for reference in ("base", "continued"):
        versus = numbers[f"comparison_with_{reference}"]["rlhg"]
        clicks = numbers["agents"]["rlhg"]["clicks"]["mean"] / numbers["agents"][reference]["clicks"]["mean"]
        gains.append(f"over the {reference} policy: users' goal {versus['human_goal_relative_gain']:+.1%} (per seed "
                     + ", ".join(f"{g:+.1%}" for g in versus["human_goal_relative_gain_per_seed"])
                     + f"), clicks ratio {clicks:.3f}")
    out["gain"] = "RLHG " + "; ".join(gains) + "."
    sweep = numbers["alpha_sweep"]
    lines = ["| alpha | RLHG users' goal | RLHG clicks | naive users' goal | naive clicks |", "|---|---|---|---|---|"]
    for alpha in sweep["rlhg"]:
        r, n = sweep["rlhg"][alpha], sweep["naive"][alpha]
        lines.append(f"| {alpha} | {r['human_goal']:.3f} | {r['clicks']:.3f} | {n['human_goal']:.3f} | {n['clicks']:.3f} |")
    out["alpha_sweep"] = "\n".join(lines)
    return out
