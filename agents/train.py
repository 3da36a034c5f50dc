"""`python -m agents fit -c configs/agents/<name>.yaml`: the Lightning CLI for every agents module.

The model and the data are chosen in the YAML by `class_path` (subclass mode), so one entry point
trains a reward from preferences (agents.reward_learning.RewardLearner + PreferenceDataModule)
and any other LightningModule/LightningDataModule pair of this package (PPO, RLHG).
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI


def main(argv: list[str]) -> int:
    """argv starts with the subcommand ("fit", "validate", ...), as LightningCLI expects."""
    # `python -m agents fit ...` passes its argv on explicitly, so sys.argv holds the same words
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run")
    LightningCLI(
        pl.LightningModule,
        None,  # data is optional: PPO and RLHG make their own rollouts
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
        # runs without a logger still write config.yaml and checkpoints: keep them under artifacts/
        trainer_defaults={"default_root_dir": "artifacts/runs/agents"},
    )
    return 0
