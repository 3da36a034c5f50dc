"""Each metric on hand-computed cases, NDCG against scikit-learn, the rest against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from recsys.evaluation import metrics as M
from recsys.evaluation.pairs import UserItemSet

# One user, list of 5, hits at ranks 1, 3 and 4 (positions 0, 2, 3); 4 relevant items in all.
HITS = np.array([[True, False, True, True, False]])
N_REL = np.array([4])


@pytest.mark.parametrize(("metric", "k", "expected"), [
    (M.recall, 1, 1 / 4), (M.recall, 3, 2 / 4), (M.recall, 5, 3 / 4),
    (M.precision, 1, 1.0), (M.precision, 3, 2 / 3), (M.precision, 5, 3 / 5),
    (M.f1, 3, 2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2)),
    (M.hit_rate, 1, 1.0), (M.mrr, 5, 1.0),
    # DCG@5 = 1 + 1/log2(4) + 1/log2(5); IDCG over min(4, 5) = 4 positions.
    (M.ndcg, 5, (1 + 1 / 2 + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5))),
    # IDCG over min(4, 3) = 3 positions.
    (M.ndcg, 3, (1 + 1 / 2) / (1 + 1 / math.log2(3) + 1 / 2)),
    # AP@5 = (1/1 + 2/3 + 3/4) / min(4, 5); AP@3 = (1 + 2/3) / min(4, 3).
    (M.average_precision, 5, (1 + 2 / 3 + 3 / 4) / 4), (M.average_precision, 3, (1 + 2 / 3) / 3),
])
def test_accuracy_metrics_on_a_hand_computed_list(metric, k, expected):
    assert metric(HITS, N_REL, k)[0] == pytest.approx(expected, rel=1e-12)


def test_first_hit_late_and_no_hit():
    hits = np.array([[False, False, True], [False, False, False]])
    n_rel = np.array([1, 2])
    np.testing.assert_allclose(M.mrr(hits, n_rel, 3), [1 / 3, 0])
    np.testing.assert_allclose(M.mrr(hits, n_rel, 2), [0, 0])
    np.testing.assert_allclose(M.hit_rate(hits, n_rel, 3), [1, 0])
    np.testing.assert_allclose(M.ndcg(hits, n_rel, 3), [(1 / 2) / 1, 0])
    np.testing.assert_allclose(M.f1(hits, n_rel, 3), [2 * (1 / 3) * 1 / (1 / 3 + 1), 0])


def test_lists_shorter_than_k_count_as_misses_and_precision_divides_by_k():
    hits = np.array([[True, True]])
    assert M.precision(hits, np.array([2]), 4)[0] == 0.5
    assert M.recall(hits, np.array([2]), 4)[0] == 1.0
    assert M.ndcg(hits, np.array([2]), 4)[0] == pytest.approx(1.0)


def test_perfect_list_scores_one_even_with_more_relevant_than_k():
    hits = np.ones((1, 3), dtype=bool)
    n_rel = np.array([10])
    assert M.ndcg(hits, n_rel, 3)[0] == pytest.approx(1.0)
    assert M.average_precision(hits, n_rel, 3)[0] == pytest.approx(1.0)
    assert M.recall(hits, n_rel, 3)[0] == pytest.approx(0.3)


def test_users_without_relevant_items_score_zero_not_nan():
    hits = np.zeros((1, 3), dtype=bool)
    for metric in M.ACCURACY_METRICS.values():
        assert metric(hits, np.array([0]), 3)[0] == 0.0


def _dense_case(rng, n_users=40, n_items=30):
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(float)  # no ties
    relevance = (rng.random((n_users, n_items)) < 0.15).astype(int)
    relevance[relevance.sum(axis=1) == 0, 0] = 1  # sklearn and we agree only on users with a relevant item
    return scores, relevance


@pytest.mark.parametrize("k", [1, 5, 10, 30])
def test_ndcg_matches_scikit_learn_on_dense_binary_cases(k):
    scores, relevance = _dense_case(np.random.default_rng(k))
    ranking = np.argsort(-scores, axis=1)
    hits = np.take_along_axis(relevance, ranking, axis=1).astype(bool)
    ours = M.ndcg(hits, relevance.sum(axis=1), k)
    per_user = [ndcg_score(relevance[[u]], scores[[u]], k=k) for u in range(len(scores))]
    np.testing.assert_allclose(ours, per_user, rtol=1e-12)
    assert ours.mean() == pytest.approx(ndcg_score(relevance, scores, k=k), rel=1e-12)


def _brute_force(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Textbook definitions, one user at a time."""
    top = ranked[:k]
    hit_positions = [i for i, item in enumerate(top) if item in relevant]
    n_hits = len(hit_positions)
    ap = sum((j + 1) / (pos + 1) for j, pos in enumerate(hit_positions)) / min(len(relevant), k)
    return {"recall": n_hits / len(relevant), "precision": n_hits / k,
            "mrr": 1 / (hit_positions[0] + 1) if hit_positions else 0.0,
            "hit_rate": float(n_hits > 0), "map": ap}


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_recall_precision_map_mrr_match_brute_force_on_random_lists(k):
    rng = np.random.default_rng(100 + k)
    n_users, n_items, length = 60, 50, 20
    lists = np.stack([rng.permutation(n_items)[:length] for _ in range(n_users)])
    relevant = [set(rng.choice(n_items, size=rng.integers(1, 12), replace=False).tolist()) for _ in range(n_users)]
    pairs = UserItemSet.from_pairs(np.repeat(np.arange(n_users), [len(r) for r in relevant]),
                                   np.concatenate([sorted(r) for r in relevant]), n_users, n_items)
    users = np.arange(n_users)
    hits = pairs.contains(users, lists)
    n_rel = pairs.row_counts()
    for name in ("recall", "precision", "mrr", "hit_rate", "map"):
        expected = [_brute_force(lists[u].tolist(), relevant[u], k)[name] for u in users]
        np.testing.assert_allclose(M.ACCURACY_METRICS[name](hits, n_rel, k), expected, rtol=1e-12, err_msg=name)


TOP = np.array([[0, 1, 2], [0, 2, -1], [0, 3, 1]])  # -1: an empty slot


def test_item_coverage_on_a_hand_case():
    assert M.item_coverage(TOP, n_items=5, k=1) == pytest.approx(1 / 5)
    assert M.item_coverage(TOP, n_items=5, k=3) == pytest.approx(4 / 5)


def test_average_popularity_on_a_hand_case():
    popularity = np.array([10, 4, 2, 0, 7])
    np.testing.assert_allclose(M.average_popularity(TOP, popularity, 2), [7, 6, 5])
    # The empty slot of user 1 does not count in the mean.
    np.testing.assert_allclose(M.average_popularity(TOP, popularity, 3), [16 / 3, 6, 14 / 3])


def test_gini_of_exposure_on_hand_cases():
    # Exposure counts at k=3: item0 3, item1 2, item2 2, item3 1, item4 0 -> sorted [0, 1, 2, 2, 3].
    x = np.array([0, 1, 2, 2, 3])
    expected = sum((2 * i - 5 - 1) * v for i, v in enumerate(x, start=1)) / (5 * x.sum())
    assert M.gini_exposure(TOP, n_items=5, k=3) == pytest.approx(expected)
    assert expected == pytest.approx(14 / 40)  # (-2*1 + 0*2 + 2*2 + 4*3) / (5 * 8)
    assert M.gini_index(np.array([5, 5, 5, 5])) == 0.0
    assert M.gini_index(np.array([0, 0, 0, 8])) == pytest.approx(3 / 4)
    # Against the mean-absolute-difference definition: sum |xi - xj| / (2 n^2 mean).
    values = np.random.default_rng(0).integers(0, 50, size=37)
    mad = np.abs(values[:, None] - values[None, :]).sum() / (2 * len(values) ** 2 * values.mean())
    assert M.gini_index(values) == pytest.approx(mad)
