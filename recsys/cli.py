"""Dispatch `python -m recsys <command> ...` to the module that owns the command.

Each command module exposes `main(argv: list[str]) -> int`. Modules are imported lazily so
`--help` and light commands start fast. Errors a user can cause (`UserInputError`) are printed
as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import NoReturn

from recsys.errors import UserInputError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("recsys.experiments.demo", "world -> BPR and NBPO -> evaluate (observed, clean) -> export -> serve -> query"),
    "world": ("recsys.data.world_cli", "generate the preference world and write it to files"),
    "evaluate": ("recsys.evaluation.cli", "score recommendation lists from any system against held-out truth"),
    "fit": ("recsys.training.train", "train a model from a YAML config (LightningCLI); --seeds 0,1,2: once per seed, mean ± sd"),
    "validate": ("recsys.training.train", "evaluate a checkpoint on the validation split (LightningCLI)"),
    "test": ("recsys.training.train", "evaluate a checkpoint on the test split (LightningCLI)"),
    "predict": ("recsys.training.train", "write top-K recommendations for users (LightningCLI)"),
    "compare": ("recsys.experiments.compare", "train several models over seeds on one split; paired tests and plots"),
    "export": ("recsys.export.cli", "turn a checkpoint into a serving bundle (ONNX + faiss + catalog)"),
    "discern": ("recsys.experiments.discern", "train TIGER/Mender generative retrievers and score the five preference-discerning axes"),
}
# LightningCLI commands receive their own name as the first argument.
LIGHTNING_COMMANDS = {"fit", "validate", "test", "predict"}


def usage(prog: str, commands: dict[str, tuple[str, str]]) -> str:
    width = max(map(len, commands))
    lines = [f"usage: python -m {prog} <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in commands.items()]
    lines += ["", f"`python -m {prog} <command> --help` explains each command's options."]
    return "\n".join(lines)


def dispatch(prog: str, commands: dict[str, tuple[str, str]], lightning: set[str], argv: list[str]) -> int:
    """Run `argv[0]`'s module; print user errors as one line and return 2."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(prog, commands))
        return 0
    command, rest = argv[0], argv[1:]
    if command not in commands:
        print(f"error: unknown command '{command}'\n\n{usage(prog, commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[command][0])
    try:
        return int(module.main([command, *rest] if command in lightning else rest) or 0)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def exit_after(code: int) -> NoReturn:
    """End a `python -m` run. Freezing the heap first spares the interpreter a last garbage collection over
    everything torch and Lightning loaded, about a second of a ten-second run; files and logs are already
    written and closed before `main` returns."""
    gc.freeze()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    return dispatch("recsys", COMMANDS, LIGHTNING_COMMANDS, list(sys.argv[1:] if argv is None else argv))
