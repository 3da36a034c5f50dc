"""A Lightning callback that records how long each training epoch and each evaluation takes.

`bench/bench_scaling.py` adds it to the trainer of `python -m recsys fit` through the run's YAML
config, so the timed path is the one a user runs. Rank 0 writes one JSON file when the process
ends (after fit, the final validation and the test): phase durations in seconds, and the peak
resident memory of this process (`ru_maxrss`) at each phase end.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import psutil
import pytorch_lightning as pl


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PhaseClock(pl.Callback):
    """Wall seconds of every training epoch, validation run and test run, written to `path` (JSON)."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.record: dict[str, list] = {"train_epoch_s": [], "validation_s": [], "test_s": [],
                                        "peak_rss_mb_at": []}
        self._started: dict[str, float] = {}
        self._validation_before = 0.0

    def _start(self, phase: str) -> None:
        self._started[phase] = time.perf_counter()

    def _stop(self, trainer: pl.Trainer, phase: str, key: str) -> None:
        if phase in self._started:
            self.record[key].append(time.perf_counter() - self._started.pop(phase))
            self.record["peak_rss_mb_at"].append([phase, round(_peak_rss_mb(), 1)])
            self._write(trainer)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Imports, then the DataModule's load and split, happen before the trainer exists: time since
        # the process started is the setup cost a user waits through.
        self.record["setup_s"] = time.time() - psutil.Process().create_time()
        self.record["world_size"] = trainer.world_size

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._validation_before = sum(self.record["validation_s"])
        self._start("train")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning validates inside the training epoch, before this hook: that time is not training.
        validation = sum(self.record["validation_s"]) - self._validation_before
        self._started["train"] = self._started.get("train", time.perf_counter()) + validation
        self._stop(trainer, "train", "train_epoch_s")

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._start("validation")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._stop(trainer, "validation", "validation_s")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._stop(trainer, "test", "test_s")

    def _write(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        self.record["pid"] = os.getpid()
        self.record["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.record, indent=1) + "\n")
