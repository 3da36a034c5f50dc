"""Exact top-K at half the memory traffic: scan float16 copies of the item vectors, then certify.

An exact (flat) index reads every item vector for every query - 25.6 MB for 100,000 x 64 floats -
so exact search is memory-bound. Scanning float16 copies reads half as much. The float16 score of
item i differs from its float32 score by at most delta = |q| * slack, where slack bounds
|v_i - fp16(v_i)| plus the rounding of both float32 dot products. If tau is the k-th best float16
score, the exact k-th best score is at least tau - delta, so every item of the exact top-k has a
float16 score of at least tau - 2 delta. When the scan's k'-th score (k' > k) is already below that
line, its k' candidates contain the exact top-k, and re-scoring them in float32 gives it exactly.
Otherwise (a crowd of near-ties at the boundary) the caller falls back to the float32 index.
"""

from __future__ import annotations

import faiss
import numpy as np

_FLOAT32_UNIT_ROUNDOFF = 2.0**-24
_FLOAT16_MAX = 65504.0


class CertifiedHalfScan:
    """float16 inner-product scan whose answers are certified against the float32 vectors."""

    def __init__(self, vectors: np.ndarray):
        n, dim = vectors.shape
        self.vectors = vectors  # float32, the scores every answer is re-ranked by
        self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        self.index.train(vectors)
        self.index.add(vectors)
        largest = float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors).max(initial=0.0)))
        # float16 keeps 11 significant bits: rounding either way errs by less than 2^-10 of a value, and by
        # less than 2^-24 in float16's subnormal range. So |v - fp16(v)| < 2^-10 |v| + sqrt(dim) 2^-24.
        error = 2.0**-10 * largest + np.sqrt(dim) * 2.0**-24
        gamma = dim * _FLOAT32_UNIT_ROUNDOFF
        # float16 error + rounding of the float32 score + rounding of the float16 score, with a 2x margin.
        self.slack = float(error + 4.0 * gamma * (2.0 * largest + error))
        in_range = n > 0 and float(np.abs(vectors).max()) < _FLOAT16_MAX
        self.usable = in_range and self._stores_within(vectors, error)

    def _stores_within(self, vectors: np.ndarray, error: float) -> bool:
        """Check the rounding claim on a sample of what faiss actually stores (cheaper than all of it)."""
        sample = np.linspace(0, len(vectors) - 1, num=min(len(vectors), 2048)).astype(np.int64)
        stored = np.stack([self.index.reconstruct(int(i)) for i in sample])
        return float(np.linalg.norm(vectors[sample] - stored, axis=1).max()) <= error

    def search(self, query: np.ndarray, k: int, n_allowed: int, params) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact top-k (items, float32 scores) of one query (1, dim) among the allowed items, or None
        when the float16 scan cannot certify its answer."""
        wide = min(2 * k + 16, n_allowed)
        approximate, ids = self.index.search(query, wide, params=params)
        approximate, ids = approximate[0], ids[0]
        found = ids >= 0
        approximate, ids = approximate[found], ids[found]
        if len(ids) < k:
            return None
        delta = float(np.linalg.norm(query)) * self.slack
        line = approximate[k - 1] - 2.0 * delta
        # Items the scan did not return score at most its last score; they are out only if that is below the line.
        if len(ids) < n_allowed and approximate[-1] >= line:
            return None
        candidates = ids[approximate >= line].astype(np.int64)
        scores = self.vectors[candidates] @ query[0]
        order = np.lexsort((candidates, -scores))[:k]
        return candidates[order], scores[order].astype(np.float32)
