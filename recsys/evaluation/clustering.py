"""Agreement of two clusterings: the adjusted Rand index (Hubert & Arabie, 1985).

ARI = (index - expected) / (max - expected) over pairs of points, from the contingency table n_ij:
index = sum_ij C(n_ij, 2), with row sums a_i and column sums b_j, expected = sum_i C(a_i, 2) *
sum_j C(b_j, 2) / C(n, 2) and max = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2. It is 1 for the same
partition (whatever the labels), about 0 for independent ones, and can go negative.
"""

from __future__ import annotations

import numpy as np

from recsys.errors import UserInputError


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def contingency(labels_a, labels_b) -> np.ndarray:
    """Counts n_ij of points with label i in `labels_a` and j in `labels_b` (labels any hashable values)."""
    a, b = np.asarray(labels_a).ravel(), np.asarray(labels_b).ravel()
    if a.shape != b.shape:
        raise UserInputError(f"adjusted Rand index: the labelings differ in length ({len(a)} and {len(b)})")
    _, rows = np.unique(a, return_inverse=True)
    _, cols = np.unique(b, return_inverse=True)
    table = np.zeros((rows.max(initial=-1) + 1, cols.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (rows, cols), 1)
    return table


def adjusted_rand_index(labels_a, labels_b) -> float:
    """The ARI of two labelings of the same points; 1.0 when both put every point in one cluster alike."""
    table = contingency(labels_a, labels_b)
    n = int(table.sum())
    if n < 2:
        raise UserInputError("adjusted Rand index needs at least 2 points")
    index = _pairs(table)
    rows, cols = _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2)
    maximum = (rows + cols) / 2
    if maximum == expected:  # both labelings trivial (one cluster, or every point its own): they agree
        return 1.0
    return (index - expected) / (maximum - expected)
