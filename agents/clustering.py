"""Adjusted Rand index of two labelings (numpy only): how well recovered groups match true ones.

ARI = (sum_ij C(n_ij, 2) - E) / (0.5 (sum_i C(a_i, 2) + sum_j C(b_j, 2)) - E),
E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2), over the contingency table n_ij (Hubert & Arabie, 1985).
1 for identical partitions up to relabelling, about 0 for chance agreement.
"""

from __future__ import annotations

import numpy as np


def adjusted_rand_index(labels_true, labels_pred) -> float:
    a, b = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labelings differ in length: {len(a)} and {len(b)}")
    n = len(a)
    if n < 2:
        return 1.0
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1)

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = 0.5 * (rows + cols)
    if top == expected:  # both labelings a single group (or all singletons): perfect agreement
        return 1.0
    return float((index - expected) / (top - expected))
