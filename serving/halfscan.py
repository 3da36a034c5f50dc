"""Exact top-K at less memory traffic per query: scan cheap scores, then certify against float32.

An exact (flat) index reads every item vector for every query - 25.6 MB for 100,000 x 64 floats -
so exact search is memory-bound. Two scans cut that traffic:

- `CertifiedHalfScan`, one query: scans float16 copies of the item vectors (half the bytes);
- `CertifiedBatchScan`, several queries at once: one float32 matrix product (faiss's BLAS path)
  reads the item vectors once for the whole batch. There is no float16 matrix product on CPU in
  faiss or numpy, so the batch scans float32; its scores differ from the exact ones only by the
  rounding of a 64-term float32 sum.

Either way the approximate score of item i differs from its exact float32 score by at most
delta = |q| * slack (slack bounds the float16 rounding of the vector, if any, plus the rounding of
both float32 dot products). If tau is the k-th best approximate score, the exact k-th best score is
at least tau - delta, so every item of the exact top-k has an approximate score of at least
tau - 2 delta. When the scan's last fetched score is already below that line, the fetched
candidates contain the exact top-k, and re-scoring them exactly gives it. Otherwise (a crowd of
near-ties at the boundary) the caller falls back to a slower exact path.

"Exact" is `exact_scores`: a float32 dot product summed in a fixed tree order, so an item's score
does not depend on which other items are scored with it (a BLAS matrix-vector product may sum a
row in another order depending on the number of rows). Every exact answer of the service ranks by
it, ties by the lower item index, so the single and the batched paths return the same bits.
"""

from __future__ import annotations

import faiss
import numpy as np

_FLOAT32_UNIT_ROUNDOFF = 2.0**-24
_FLOAT16_MAX = 65504.0


def exact_scores(vectors: np.ndarray, candidates: np.ndarray, query: np.ndarray) -> np.ndarray:
    """float32 scores <vectors[c], query> of the candidates, each summed pairwise in a fixed order."""
    terms = vectors[candidates] * query  # (m, dim) float32 products, each rounded once
    width = terms.shape[1]
    padded = 1 << max(0, (width - 1).bit_length())
    if padded != width:  # zeros add exactly, so padding to a power of two changes no sum
        terms = np.concatenate([terms, np.zeros((len(terms), padded - width), np.float32)], axis=1)
    while terms.shape[1] > 1:
        half = terms.shape[1] // 2
        terms = terms[:, :half] + terms[:, half:]
    return terms[:, 0].astype(np.float32, copy=False)


def best_exact(vectors: np.ndarray, candidates: np.ndarray, query: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates by `exact_scores`, ties by the lower item index."""
    candidates = np.asarray(candidates, dtype=np.int64)
    scores = exact_scores(vectors, candidates, query)
    order = np.lexsort((candidates, -scores))[:k]
    return candidates[order], scores[order]


def certified_top_k(vectors: np.ndarray, query: np.ndarray, approximate: np.ndarray, ids: np.ndarray, k: int,
                    unseen_bound: float | None, delta: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-k from the allowed candidates a scan fetched (approximate scores, best first), or None.

    unseen_bound: the highest approximate score an allowed item the scan did not fetch can have
    (None when it fetched every allowed item). delta: bound on |approximate - exact| of any item."""
    if len(ids) < k:
        return None
    line = approximate[k - 1] - 2.0 * delta
    if unseen_bound is not None and unseen_bound >= line:
        return None
    return best_exact(vectors, ids[approximate >= line], query, k)


def _rounding_slack(largest: float, dim: int, vector_error: float) -> float:
    """|approximate - exact| per unit of |q|: vector error + rounding of both float32 scores, with a 2x margin."""
    gamma = dim * _FLOAT32_UNIT_ROUNDOFF
    return float(vector_error + 4.0 * gamma * (2.0 * largest + vector_error))


def _largest_norm(vectors: np.ndarray) -> float:
    return float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors).max(initial=0.0)))


class CertifiedHalfScan:
    """float16 inner-product scan whose answers are certified against the float32 vectors."""

    def __init__(self, vectors: np.ndarray):
        n, dim = vectors.shape
        self.vectors = vectors  # float32, the scores every answer is re-ranked by
        self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        self.index.train(vectors)
        self.index.add(vectors)
        largest = _largest_norm(vectors)
        # float16 keeps 11 significant bits: rounding either way errs by less than 2^-10 of a value, and by
        # less than 2^-24 in float16's subnormal range. So |v - fp16(v)| < 2^-10 |v| + sqrt(dim) 2^-24.
        error = 2.0**-10 * largest + np.sqrt(dim) * 2.0**-24
        self.slack = _rounding_slack(largest, dim, error)
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
        approximate, ids = approximate[found], ids[found].astype(np.int64)
        # Items the scan did not return score at most its last score.
        unseen = float(approximate[-1]) if 0 < len(ids) < n_allowed else None
        return certified_top_k(self.vectors, query[0], approximate, ids, k, unseen,
                               float(np.linalg.norm(query)) * self.slack)


class CertifiedBatchScan:
    """Several queries against the float32 item vectors in one matrix product, certified per query.

    Each query may exclude its own items: the scan fetches enough candidates without a filter
    (k + the query's excluded count, doubled, plus a margin) and drops the excluded ones after, which
    stays exact by the same certificate (an item it did not fetch scores at most its last score)."""

    def __init__(self, index: faiss.IndexFlat, vectors: np.ndarray):
        self.index = index  # the bundle's IndexFlatIP over `vectors` (no copy)
        self.vectors = vectors
        self.slack = _rounding_slack(_largest_norm(vectors), vectors.shape[1], 0.0)
        # faiss multiplies matrices (BLAS) from this many queries on, and scans one query at a time
        # below it. Two queries already share the pass over the items; one keeps the direct scan.
        faiss.cvar.distance_compute_blas_threshold = 2

    def search(self, queries: np.ndarray, ks: list[int],
               allowed: list[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Exact top-k of each query (rows of `queries`) among its allowed items (a boolean mask, or None
        for every item); None for a query the scan cannot certify."""
        n = self.index.ntotal
        excluded = [0 if mask is None else n - int(mask.sum()) for mask in allowed]
        wide = min(n, max(2 * (k + e) + 16 for k, e in zip(ks, excluded)))
        approximate, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), wide)
        answers: list[tuple[np.ndarray, np.ndarray] | None] = []
        for row, (k, mask) in enumerate(zip(ks, allowed)):
            scores, items = approximate[row], ids[row].astype(np.int64)
            keep = items >= 0
            if mask is not None:
                keep &= mask[np.maximum(items, 0)]
            # A dropped excluded item is not an unseen allowed one; the bound is the scan's last score.
            unseen = float(scores[-1]) if wide < n else None
            delta = float(np.linalg.norm(queries[row])) * self.slack
            answers.append(certified_top_k(self.vectors, queries[row], scores[keep], items[keep], k, unseen, delta))
        return answers
