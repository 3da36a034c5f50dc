"""Reading agent checkpoints (PPO, RLHG) with clear errors, and rebuilding the module they hold."""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.errors import DataFormatError, UserInputError

# model_kind written by each module's on_save_checkpoint -> "module:Class"
AGENT_CLASSES = {"ppo": "agents.ppo:PPO", "rlhg": "agents.rlhg:RLHG"}


def _load(path: Path) -> dict:
    if not path.is_file():
        raise UserInputError(f"{path}: no such checkpoint file")
    try:
        # A Lightning checkpoint is a torch pickle: load only checkpoints you trust, as with any .ckpt.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise DataFormatError(path, f"not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    return checkpoint if isinstance(checkpoint, dict) else {}


def checkpoint_kind(path: str | Path) -> str | None:
    """The `prefengine.model_kind` of any package checkpoint (agent or recommender), None if it has none."""
    block = _load(Path(path)).get("prefengine")
    return block.get("model_kind") if isinstance(block, dict) else None


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict of an agent saved by this package."""
    path = Path(path)
    checkpoint = _load(path)
    block = checkpoint.get("prefengine")
    kind = block.get("model_kind") if isinstance(block, dict) else None
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
