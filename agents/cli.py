"""Dispatch `python -m agents <command> ...` to the module that owns the command.

Each command module exposes `main(argv: list[str]) -> int`, imported lazily. Errors a user can
cause (`UserInputError`) print one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

from recsys.errors import UserInputError

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("agents.train", "train a reward model or an agent from a YAML config (LightningCLI)"),
    "experiment": ("agents.experiments", "run a paper experiment: regret-vs-return, rlhg"),
    "simulate": ("agents.simulate", "run episodes of a trained policy (checkpoint or bundle) in an env"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m agents <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.main([command, *rest] if command == "fit" else rest) or 0)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
