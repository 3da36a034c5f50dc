"""How a fit chose its epoch: the validation curve of the monitored metric and why training stopped.

`ValidationCurve` records the monitored metric after every validation of `fit` (not of the
sanity check, nor of the validate/test runs that follow); `selection_record` turns it and the
trainer's state into the "selection" block of metrics.json:

    {"monitor": "valid/ndcg@10", "best_epoch": 23, "best_value": 0.219, "curve": {"1": 0.137, ...},
     "stopped": "early_stop" | "max_epochs" | "other", "last_epoch": 33,
     "patience": 10, "check_val_every_n_epoch": 1, "why": "<one sentence>"}

Epochs are 0-based, as in the checkpoint names (best-epoch=23.ckpt).
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.trainer.states import TrainerFn


class ValidationCurve(Callback):
    """Epoch -> value of `monitor` at each validation during fit."""

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.curve: dict[int, float] = {}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            self.curve[int(trainer.current_epoch)] = float(value)


def selection_record(trainer: Trainer, curve: ValidationCurve) -> dict[str, Any]:
    """The "selection" block of metrics.json for a finished fit (higher is better)."""
    points = curve.curve
    best_epoch = max(points, key=lambda e: (points[e], -e)) if points else None  # first epoch at the maximum
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    every = trainer.check_val_every_n_epoch or 1
    last = int(trainer.current_epoch) - 1  # epochs completed, 0-based
    record: dict[str, Any] = {"monitor": curve.monitor, "best_epoch": best_epoch,
                              "best_value": points.get(best_epoch) if points else None,
                              "curve": {str(e): v for e, v in sorted(points.items())},
                              "check_val_every_n_epoch": every, "last_epoch": last}
    if stopper is not None:
        record["patience"] = int(stopper.patience)
    if stopper is not None and stopper.stopped_epoch > 0:
        record["stopped"] = "early_stop"
        record["last_epoch"] = int(stopper.stopped_epoch)
        record["why"] = (f"early stop after epoch {stopper.stopped_epoch}: {stopper.monitor} did not improve in "
                         f"{stopper.patience} validations (one every {every} epochs) since epoch {best_epoch}")
    elif trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs:
        record["stopped"] = "max_epochs"
        record["why"] = f"max_epochs ({trainer.max_epochs}) reached; the best validation was at epoch {best_epoch}"
    else:
        record["stopped"] = "other"
        record["why"] = f"stopped after epoch {last} (max_steps, max_time or an interruption)"
    return record
