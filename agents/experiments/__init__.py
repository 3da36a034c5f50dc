"""`python -m agents experiment <name> ...`: paper experiments, each a module with `main(argv) -> int`."""

from __future__ import annotations

import importlib

from recsys.errors import UserInputError

EXPERIMENTS: dict[str, tuple[str, str]] = {
    "regret-vs-return": (
        "agents.experiments.regret_vs_return",
        "Knox et al.: regret vs partial-return preference models",
    ),
    "human-likelihood": (
        "agents.experiments.human_likelihood",
        "Knox et al.: regret vs partial return on real human preferences (likelihood)",
    ),
    "rlhg": ("agents.experiments.rlhg", "Gao et al.: RLHG vs the naive sum and PPO in Collab-v0 and RecSim-v0"),
    "pluralistic": (
        "agents.experiments.pluralistic",
        "PAL-style reward prototypes vs one shared reward and per-person rewards, seen and new people",
    ),
}


def usage() -> str:
    width = max(map(len, EXPERIMENTS))
    lines = ["usage: python -m agents experiment <name> [options]", "", "experiments:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in EXPERIMENTS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in EXPERIMENTS:
        raise UserInputError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return int(importlib.import_module(EXPERIMENTS[name][0]).main(rest) or 0)
