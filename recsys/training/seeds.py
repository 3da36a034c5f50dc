"""`recsys fit --seeds 0,1,2`: one fit per seed, then mean ± sd and the per-seed values.

A seed sets the model's initialization (`seed_everything`) and the epoch shuffles and negative
draws (`data.sample_seed`); the split stays the one `data.seed` fixes, as in `recsys compare`.
Seed k's run writes into <root>/seed<k>/ as a single fit would; <root>/metrics.json then holds

    {"<split>/<metric>@<k>": mean over seeds, ..., "sd": {key: sample sd}, "per_seed": {key: [...]},
     "seeds": [0, 1, 2], "selection": {"best_epoch": [...], "stopped": [...]}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import UserInputError


def pop_seeds(argv: list[str]) -> tuple[list[str], list[int] | None]:
    """Remove `--seeds LIST` (or `--seeds=LIST`) from argv; LIST is "0,1,2" or "[0, 1, 2]"."""
    rest, seeds = [], None
    args = iter(argv)
    for arg in args:
        if arg == "--seeds" or arg.startswith("--seeds="):
            text = arg.partition("=")[2] if "=" in arg else next(args, "")
            seeds = parse_seeds(text)
        else:
            rest.append(arg)
    return rest, seeds


def parse_seeds(text: str) -> list[int]:
    items = [t for t in re.split(r"[\s,\[\]]+", text) if t]
    if not items or not all(re.fullmatch(r"\d+", t) for t in items):
        raise UserInputError(f"--seeds: expected non-negative integers such as 0,1,2; got {text!r}")
    seeds = [int(t) for t in items]
    if len(set(seeds)) != len(seeds):
        raise UserInputError(f"--seeds: each seed once, got {text!r}")
    return seeds


def summarize(metrics: dict[int, dict[str, float]], selections: dict[int, dict[str, Any] | None]) -> dict[str, Any]:
    """Mean, sample sd and per-seed values of every metric all seeds report."""
    seeds = list(metrics)
    keys = sorted(set.intersection(*(set(m) for m in metrics.values())))
    values = {key: [float(metrics[s][key]) for s in seeds] for key in keys}
    summary: dict[str, Any] = {key: float(np.mean(v)) for key, v in values.items()}
    summary["sd"] = {key: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for key, v in values.items()}
    summary["per_seed"] = values
    summary["seeds"] = seeds
    if all(selections.get(s) for s in seeds):
        summary["selection"] = {field: [selections[s][field] for s in seeds]
                                for field in ("best_epoch", "stopped", "last_epoch")}
    return summary


def report(summary: dict[str, Any], keys: list[str] | None = None) -> str:
    """A Markdown table: metric, mean ± sd, the per-seed values."""
    keys = keys or [k for k in summary["per_seed"] if re.match(r"test/(recall|ndcg)@", k)]
    lines = [f"| metric | mean ± sd over seeds {summary['seeds']} | per seed |", "|---|---|---|"]
    for key in keys:
        per_seed = ", ".join(f"{v:.4f}" for v in summary["per_seed"][key])
        lines.append(f"| {key} | {summary[key]:.4f} ± {summary['sd'][key]:.4f} | {per_seed} |")
    if "selection" in summary:
        lines.append(f"\nbest epochs {summary['selection']['best_epoch']}; stopped: "
                     f"{', '.join(map(str, summary['selection']['stopped']))}")
    return "\n".join(lines)


def write_summary(root: Path, summary: dict[str, Any]) -> Path:
    path = Path(root) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path
