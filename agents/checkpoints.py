"""Reading agent checkpoints (PPO, RLHG) with clear errors, and rebuilding the module they hold."""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.errors import DataFormatError, UserInputError

# model_kind written by each module's on_save_checkpoint -> "module:Class"
AGENT_CLASSES = {"ppo": "agents.ppo:PPO", "rlhg": "agents.rlhg:RLHG"}


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict of an agent saved by this package."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise DataFormatError(path, f"not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    kind = checkpoint.get("prefengine", {}).get("model_kind") if isinstance(checkpoint, dict) else None
    if kind not in AGENT_CLASSES:
        raise DataFormatError(path, f"not an agent checkpoint (model_kind {kind!r}; expected one of "
                                    f"{sorted(AGENT_CLASSES)})", field="prefengine.model_kind")
    return checkpoint


def load_agent(path: str | Path):
    """The PPO or RLHG module saved in `path`, in eval mode."""
    import importlib

    kind = read_checkpoint(path)["prefengine"]["model_kind"]
    module_name, class_name = AGENT_CLASSES[kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    module = cls.load_from_checkpoint(str(path), map_location="cpu")
    return module.eval()
