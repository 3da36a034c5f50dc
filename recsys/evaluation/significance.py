"""Is model A better than model B? Paired tests over users and over seeds.

Both models are scored on the same users (or trained with the same seeds), so the tests work on
paired differences d = a - b:

- paired t-test: t = mean(d) / (sd(d) / sqrt(n)) with n - 1 degrees of freedom, two-sided
  p-value (the same numbers as scipy.stats.ttest_rel; when every difference is 0 we report
  t = 0, p = 1 where scipy gives NaN);
- bootstrap: percentile confidence interval of mean(d) from `n_resamples` resamples of the
  pairs with replacement, seeded;
- Holm-Bonferroni adjustment when many metrics are compared at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from recsys.errors import UserInputError
from recsys.evaluation.evaluator import EvaluationResult

# Resamples per chunk, so the (chunk x n) index matrix stays near 64 MB whatever n is.
_CHUNK_CELLS = 8_000_000


@dataclass(frozen=True)
class PairedComparison:
    """A minus B on paired observations (users or seeds)."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    t_statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise UserInputError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise UserInputError(f"a paired test needs at least 2 pairs, got {len(a)}")
    return a, b


def paired_t_test(a, b) -> tuple[float, float]:
    """(t statistic, two-sided p-value) of the paired differences a - b."""
    a, b = _paired(a, b)
    difference = a - b
    n = len(difference)
    spread = difference.std(ddof=1)
    mean = difference.mean()
    if spread == 0:
        # No variation: either every difference is 0 (no evidence) or all equal and non-zero.
        return (0.0, 1.0) if mean == 0 else (float(np.copysign(np.inf, mean)), 0.0)
    t = mean / (spread / np.sqrt(n))
    return float(t), float(2 * stats.t.sf(abs(t), df=n - 1))


def bootstrap_ci(difference, confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `difference` (paired differences)."""
    if not 0 < confidence < 1:
        raise UserInputError(f"confidence must be between 0 and 1, got {confidence}")
    difference = np.asarray(difference, dtype=np.float64).ravel()
    n = len(difference)
    if n == 0:
        raise UserInputError("bootstrap needs at least one paired difference")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = difference[picks].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_comparison(a, b, confidence: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> PairedComparison:
    a, b = _paired(a, b)
    t, p = paired_t_test(a, b)
    low, high = bootstrap_ci(a - b, confidence, n_resamples, seed)
    return PairedComparison(n=len(a), mean_a=float(a.mean()), mean_b=float(b.mean()),
                            mean_difference=float((a - b).mean()), t_statistic=t, p_value=p,
                            ci_low=low, ci_high=high, confidence=confidence)


def _split_of(key: str) -> str:
    return key.split("/", 1)[0]


def compare_results(a: EvaluationResult, b: EvaluationResult, keys: Sequence[str] | None = None,
                    confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0,
                    ) -> dict[str, PairedComparison]:
    """Compare two evaluations user by user on the users both evaluated, for each per-user metric key."""
    keys = list(keys) if keys is not None else [k for k in a.per_user if k in b.per_user]
    if not keys:
        raise UserInputError("the two results share no per-user metric to compare")
    out = {}
    for key in keys:
        if key not in a.per_user or key not in b.per_user:
            raise UserInputError(f"metric '{key}' has no per-user values in both results")
        split = _split_of(key)
        _, in_a, in_b = np.intersect1d(a.users[split], b.users[split], assume_unique=True,
                                            return_indices=True)
        out[key] = paired_comparison(a.per_user[key][in_a], b.per_user[key][in_b], confidence, n_resamples, seed)
    return out


def compare_over_seeds(a: Sequence[EvaluationResult | Mapping[str, float]],
                       b: Sequence[EvaluationResult | Mapping[str, float]], keys: Sequence[str] | None = None,
                       confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0,
                       ) -> dict[str, PairedComparison]:
    """Compare two models run with the same seeds: run i of `a` is paired with run i of `b`."""
    if len(a) != len(b):
        raise UserInputError(f"compare_over_seeds pairs runs by seed: got {len(a)} and {len(b)} runs")
    flat_a = [r.metrics if isinstance(r, EvaluationResult) else r for r in a]
    flat_b = [r.metrics if isinstance(r, EvaluationResult) else r for r in b]
    keys = list(keys) if keys is not None else [k for k in flat_a[0] if all(k in r for r in (*flat_a, *flat_b))]
    return {key: paired_comparison([r[key] for r in flat_a], [r[key] for r in flat_b], confidence,
                                   n_resamples, seed) for key in keys}


def holm_bonferroni(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (family-wise error control over several comparisons)."""
    names = sorted(p_values, key=p_values.get)
    m = len(names)
    adjusted, running = {}, 0.0
    for i, name in enumerate(names):
        running = max(running, min(1.0, (m - i) * p_values[name]))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}
