"""Dispatch `python -m agents <command> ...` to the module that owns the command (same rules as
`python -m recsys`: lazy imports, user errors as one line with exit status 2)."""

from __future__ import annotations

import sys

from recsys.cli import dispatch

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("agents.train", "train a reward model or an agent from a YAML config (LightningCLI)"),
    "experiment": ("agents.experiments", "run a paper experiment: regret-vs-return, human-likelihood, rlhg, pluralistic"),
    "simulate": ("agents.simulate", "run episodes of a trained policy (checkpoint or bundle) in an env"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("agents", COMMANDS, {"fit"}, list(sys.argv[1:] if argv is None else argv))
