"""Placing a new user among a pluralistic bundle's taste prototypes from pairwise comparisons (numpy only).

A pluralistic bundle (model kind "pluralistic") holds K prototypes beside its item vectors (both
with the item bias folded in as one extra coordinate, so a score is one inner product). A new user
answers M comparisons "preferred over other"; their mixture logits z solve

    min_z  sum_m softplus(-w(z) . d_m) + (prior / 2) |z - z0|^2,   w = softmax(z),

with d_m = P (v_preferred - v_other) the comparison's difference in prototype scores and z0 the
logits of the training users' mean mixture. The query vector is then w(z) @ P. This is the objective of
`recsys.models.pluralistic.place` (torch, L-BFGS); here it is solved by Newton's method with a
line search, and the two agree to 1e-5 (a test checks it). The manifest's "pluralistic" section:
{"prototypes": file name, "prior_logits": [K floats], "placement_prior": float,
"recommended_comparisons": int}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SECTION = "pluralistic"
PROTOTYPES_FILE = "prototypes.npy"
MAX_ITERATIONS = 100
GRADIENT_TOLERANCE = 1e-9
# Float64 rounding of the objective: a step that changes it by less than this is not rejected.
ROUNDING = 1e-12


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _objectives(z: np.ndarray, diff: np.ndarray, weight: np.ndarray, z0: np.ndarray, prior: float) -> np.ndarray:
    margin = np.einsum("bmk,bk->bm", diff, _softmax_rows(z))
    return (weight * np.logaddexp(0.0, -margin)).sum(1) + 0.5 * prior * np.square(z - z0).sum(1)


def place(diff: np.ndarray, z0: np.ndarray, prior: float) -> np.ndarray:
    """The mixture logits (K,) of one user from `diff` (M, K), one row per comparison (float64)."""
    return place_many([diff], z0, prior)[0]


def place_many(diffs: list[np.ndarray], z0: np.ndarray, prior: float) -> np.ndarray:
    """The logits (B, K) of B users at once, user b from `diffs[b]` (M_b, K); each as `place` would.

    The users are independent: padded comparisons weigh 0, and each user takes its own Newton steps
    and line search (a converged user stops moving), so a batch answers as its users would alone.
    """
    z0 = np.asarray(z0, dtype=np.float64)
    b, k = len(diffs), len(z0)
    longest = max(1, max(len(d) for d in diffs))
    diff = np.zeros((b, longest, k))
    weight = np.zeros((b, longest))
    for row, d in enumerate(diffs):
        diff[row, :len(d)] = d
        weight[row, :len(d)] = 1.0
    z = np.repeat(z0[None, :], b, axis=0)
    eye = np.eye(k)
    value = _objectives(z, diff, weight, z0, prior)
    active = np.ones(b, dtype=bool)
    for _ in range(MAX_ITERATIONS):
        w = _softmax_rows(z)
        y = np.einsum("bmk,bk->bm", diff, w)
        s = weight * 0.5 * (1.0 - np.tanh(0.5 * y))  # sigmoid(-y), stable for any y; 0 on padding
        g = w[:, None, :] * (diff - y[..., None])  # (B, M, K): d y_m / d z
        a = np.einsum("bm,bmk->bk", s, g)
        gradient = -a + prior * (z - z0)
        active &= np.abs(gradient).max(axis=1) >= GRADIENT_TOLERANCE
        if not active.any():
            break
        curvature = s * (1.0 - 0.5 * (1.0 - np.tanh(0.5 * y)))  # weight * sigmoid(-y) * sigmoid(y)
        gauss_newton = np.einsum("bmk,bm,bml->bkl", g, curvature, g) + prior * eye
        hessian = gauss_newton - a[:, :, None] * eye + a[:, :, None] * w[:, None, :] + w[:, :, None] * a[:, None, :]
        # Not convex here: the Gauss-Newton step, which always descends.
        convex = np.linalg.eigvalsh(hessian).min(axis=1) > 0
        matrix = np.where(convex[:, None, None], hessian, gauss_newton)
        step = -np.linalg.solve(matrix, gradient[..., None])[..., 0]
        step[~active] = 0.0
        size = np.ones(b)
        searching = active.copy()
        candidate, new_value = z.copy(), value.copy()
        for _ in range(30):  # backtracking (Armijo), with slack for rounding near the optimum
            trial = z + size[:, None] * step
            trial_value = _objectives(trial, diff, weight, z0, prior)
            accept = searching & (trial_value <= value + 1e-4 * size * (gradient * step).sum(1)
                                  + ROUNDING * (1.0 + np.abs(value)))
            candidate[accept], new_value[accept] = trial[accept], trial_value[accept]
            searching &= ~accept
            if not searching.any():
                break
            size[searching] *= 0.5
        active &= ~searching  # a user whose line search found no descent is done
        z, value = candidate, new_value
    return z


@dataclass(frozen=True)
class Placement:
    """A bundle's prototypes and what placing a user needs; `query(preferred, over)` -> (query vector, weights)."""

    prototypes: np.ndarray  # (K, dim) float64, bias coordinate included
    item_prototype_scores: np.ndarray  # (n_items, K) float64: item vector . prototype
    prior_logits: np.ndarray  # (K,)
    prior: float
    recommended_comparisons: int

    @classmethod
    def from_arrays(cls, prototypes: np.ndarray, item_vectors: np.ndarray, section: Mapping[str, Any]) -> Placement:
        prototypes = np.asarray(prototypes, dtype=np.float64)
        prior_logits = np.asarray(section["prior_logits"], dtype=np.float64)
        if prototypes.ndim != 2 or prototypes.shape[1] != item_vectors.shape[1]:
            raise ValueError(f"prototypes are {prototypes.shape}, item vectors {item_vectors.shape}: the dimensions "
                             "must match")
        if prior_logits.shape != (len(prototypes),):
            raise ValueError(f"prior_logits has {prior_logits.size} values for {len(prototypes)} prototypes")
        prior = float(section["placement_prior"])
        if not (np.isfinite(prototypes).all() and np.isfinite(prior_logits).all() and prior > 0):
            raise ValueError("prototypes and prior_logits must be finite and placement_prior > 0")
        scores = np.asarray(item_vectors, dtype=np.float64) @ prototypes.T
        return cls(prototypes, scores, prior_logits, prior, int(section["recommended_comparisons"]))

    def query_many(self, comparisons: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Query vectors (B, dim) of B users placed together, each from its (preferred, over) indices."""
        diffs = [self.item_prototype_scores[p] - self.item_prototype_scores[o] for p, o in comparisons]
        return _softmax_rows(place_many(diffs, self.prior_logits, self.prior)) @ self.prototypes

    def logits(self, preferred: np.ndarray, over: np.ndarray) -> np.ndarray:
        """The placed user's mixture logits from item indices `preferred[m]` chosen over `over[m]`."""
        diff = self.item_prototype_scores[preferred] - self.item_prototype_scores[over]
        return place(diff, self.prior_logits, self.prior)

    def query(self, preferred: np.ndarray, over: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = softmax(self.logits(np.asarray(preferred), np.asarray(over)))
        return weights @ self.prototypes, weights
