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


def _objective(z: np.ndarray, diff: np.ndarray, z0: np.ndarray, prior: float) -> float:
    return float(np.logaddexp(0.0, -(diff @ softmax(z))).sum() + 0.5 * prior * np.square(z - z0).sum())


def place(diff: np.ndarray, z0: np.ndarray, prior: float) -> np.ndarray:
    """The mixture logits (K,) of one user from `diff` (M, K), one row per comparison (float64)."""
    diff = np.asarray(diff, dtype=np.float64)
    z0 = np.asarray(z0, dtype=np.float64)
    z = z0.copy()
    eye = np.eye(len(z))
    value = _objective(z, diff, z0, prior)
    for _ in range(MAX_ITERATIONS):
        w = softmax(z)
        y = diff @ w
        s = 0.5 * (1.0 - np.tanh(0.5 * y))  # sigmoid(-y), stable for any y
        g = w * (diff - y[:, None])  # (M, K): d y_m / d z
        a = s @ g
        gradient = -a + prior * (z - z0)
        if np.abs(gradient).max() < GRADIENT_TOLERANCE:
            break
        gauss_newton = (g * (s * (1.0 - s))[:, None]).T @ g + prior * eye
        hessian = gauss_newton - np.diag(a) + np.outer(a, w) + np.outer(w, a)
        try:
            np.linalg.cholesky(hessian)
            step = -np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:  # not convex here: the Gauss-Newton step always descends
            step = -np.linalg.solve(gauss_newton, gradient)
        size = 1.0
        for _ in range(30):  # backtracking (Armijo), with slack for rounding near the optimum
            candidate = z + size * step
            new_value = _objective(candidate, diff, z0, prior)
            if new_value <= value + 1e-4 * size * float(gradient @ step) + ROUNDING * (1.0 + abs(value)):
                break
            size *= 0.5
        else:
            break
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

    def logits(self, preferred: np.ndarray, over: np.ndarray) -> np.ndarray:
        """The placed user's mixture logits from item indices `preferred[m]` chosen over `over[m]`."""
        diff = self.item_prototype_scores[preferred] - self.item_prototype_scores[over]
        return place(diff, self.prior_logits, self.prior)

    def query(self, preferred: np.ndarray, over: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = softmax(self.logits(np.asarray(preferred), np.asarray(over)))
        return weights @ self.prototypes, weights
