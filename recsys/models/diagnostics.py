"""Diagnostics of trained models that are not ranking metrics."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for separating `positive` from the rest.

    Mann-Whitney form with average ranks, so ties count one half; NaN when either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
