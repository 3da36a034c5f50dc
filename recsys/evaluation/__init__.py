"""Offline full-ranking evaluation: metrics, the evaluator (also split over processes), significance
tests and reports. May import recsys.errors and data only.

`evaluate(scorer, truth={"test": ...}, exclude=[train], ks=(10, 20))` -> `EvaluationResult`
with flat metric keys "<split>/<metric>@<k>"; see `recsys.evaluation.evaluator` for the protocol
and `recsys.evaluation.metrics` for the definitions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsys.evaluation.evaluator import METRIC_NAMES, EvaluationResult, evaluate, evaluate_lists

__all__ = ["METRIC_NAMES", "EvaluationResult", "evaluate", "evaluate_lists"]


def __getattr__(name: str):
    # Imported on first use, so `python -m recsys evaluate --help` starts without loading torch.
    if name in __all__:
        return getattr(importlib.import_module("recsys.evaluation.evaluator"), name)
    raise AttributeError(f"module 'recsys.evaluation' has no attribute {name!r}")
