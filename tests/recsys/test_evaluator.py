"""The evaluator against a per-user brute-force reference; masking, ties, skipped users, modes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.data.interactions import IdVocab, InteractionData
from recsys.errors import UserInputError
from recsys.evaluation import EvaluationResult, evaluate, evaluate_lists
from recsys.evaluation.pairs import UserItemSet
from recsys.evaluation.ranking import Candidates, batch_size_for, rank_users, top_k

N_USERS, N_ITEMS = 30, 25


def _data(users, items, label=None, n_users=N_USERS, n_items=N_ITEMS) -> InteractionData:
    return InteractionData(user=users, item=items, timestamp=np.zeros(len(users)),
                           vocab=IdVocab.range(n_users, n_items), label=label)


def _random_split(seed: int):
    rng = np.random.default_rng(seed)
    pairs = rng.permutation(N_USERS * N_ITEMS)[: N_USERS * N_ITEMS // 3]
    users, items = pairs // N_ITEMS, pairs % N_ITEMS
    third = len(pairs) // 3
    train = _data(users[:third], items[:third])
    valid = _data(users[third:2 * third], items[third:2 * third])
    test = _data(users[2 * third:], items[2 * third:])
    return train, valid, test


def _reference(scores: np.ndarray, truth: InteractionData, excluded: list[InteractionData], ks):
    """Per user: stable argsort (lower item id first on ties), excluded items never shown,
    then the textbook metric definitions."""
    hidden = {(u, i) for d in excluded for u, i in zip(d.user, d.item)}
    relevant: dict[int, set[int]] = {}
    for u, i in zip(truth.user, truth.item):
        if (u, i) not in hidden:
            relevant.setdefault(int(u), set()).add(int(i))
    out: dict[str, list[float]] = {}
    users = sorted(relevant)
    for u in users:
        allowed = [i for i in range(scores.shape[1]) if (u, i) not in hidden]
        ranked = sorted(allowed, key=lambda i: (-scores[u, i], i))
        rel = relevant[u]
        for k in ks:
            top = ranked[:k]
            hits = [item in rel for item in top]
            n_hits = sum(hits)
            p, r = n_hits / k, n_hits / len(rel)
            dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
            first = hits.index(True) + 1 if n_hits else None
            ap = sum(sum(hits[: j + 1]) / (j + 1) for j, h in enumerate(hits) if h) / min(len(rel), k)
            values = {"recall": r, "precision": p, "f1": 2 * p * r / (p + r) if n_hits else 0.0,
                      "ndcg": dcg / idcg, "mrr": 1 / first if first else 0.0, "hit_rate": float(n_hits > 0),
                      "map": ap}
            for name, value in values.items():
                out.setdefault(f"{name}@{k}", []).append(value)
    return np.array(users), {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_evaluate_matches_per_user_reference_with_ties(seed, batch_size):
    train, valid, test = _random_split(seed)
    # Few distinct values, so ties inside and across the top-K boundary are everywhere.
    scores = np.random.default_rng(seed + 10).integers(0, 4, size=(N_USERS, N_ITEMS)).astype(np.float32)
    result = evaluate(lambda u: scores[u], {"test": test}, exclude=[train, valid], ks=(1, 5, 10),
                      batch_size=batch_size)
    users, expected = _reference(scores, test, [train, valid], (1, 5, 10))
    np.testing.assert_array_equal(result.users["test"], users)
    for key, values in expected.items():
        np.testing.assert_allclose(result.per_user[f"test/{key}"], values, rtol=1e-12, atol=1e-15, err_msg=key)
        assert result.metrics[f"test/{key}"] == pytest.approx(values.mean(), rel=1e-12)


def test_top_k_breaks_ties_by_lower_item_id_inside_and_at_the_boundary():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                           [5.0, 1.0, 1.0, 1.0, 1.0, 9.0]])
    np.testing.assert_array_equal(top_k(scores.clone(), 3), [[1, 2, 4], [0, 1, 2], [5, 0, 1]])
    # The same on a larger row where the equal scores straddle position k.
    big = torch.zeros(2, 5000)
    big[0, 4000:] = 1.0
    big[1, ::2] = 2.0
    np.testing.assert_array_equal(top_k(big.clone(), 4), [[4000, 4001, 4002, 4003], [0, 2, 4, 6]])


def test_masked_items_are_never_recommended_even_when_they_score_highest():
    scores = torch.arange(10, dtype=torch.float32).repeat(2, 1)  # item 9 best, then 8, ...
    hide = (np.array([0, 0, 1]), np.array([9, 8, 9]))
    np.testing.assert_array_equal(top_k(scores, 3, hide=hide), [[7, 6, 5], [8, 7, 6]])
    # The caller's scores are left as they were.
    np.testing.assert_array_equal(scores.numpy(), np.tile(np.arange(10, dtype=np.float32), (2, 1)))


def test_short_lists_are_padded_when_fewer_items_can_be_shown():
    scores = torch.tensor([[1.0, 2.0, 3.0, float("-inf")]])
    np.testing.assert_array_equal(top_k(scores, 6, hide=(np.array([0]), np.array([2]))), [[1, 0, -1, -1, -1, -1]])


def test_a_train_item_never_appears_and_the_relevant_item_moves_up():
    train = _data([0, 1], [3, 3])
    test = _data([0, 1], [2, 4])
    scores = np.tile(np.arange(N_ITEMS, 0, -1, dtype=np.float32), (N_USERS, 1))
    scores[:, 3] = 100.0  # the train item scores highest
    scores[:, 2] = 99.0
    result = evaluate(lambda u: scores[u].copy(), {"test": test}, exclude=[train], ks=(1,))
    np.testing.assert_allclose(result.per_user["test/mrr@1"], [1.0, 0.0])
    lists = rank_users(lambda u: scores[u].copy(), np.arange(N_USERS), 3,
                       [Candidates(UserItemSet.positives_of(train))], N_ITEMS, batch_size=4)[0]
    assert 3 not in lists[:2]
    np.testing.assert_array_equal(lists[0], [2, 0, 1])


def test_users_without_relevant_items_are_skipped_and_counted(caplog):
    train = _data([2], [5])
    # user 0: one positive; user 1: only a negative label; user 2: its only positive is a train item.
    test = _data([0, 1, 2], [1, 2, 5], label=np.array([1, 0, 1]))
    result = evaluate(lambda u: np.random.default_rng(0).random((len(u), N_ITEMS)), {"test": test},
                      exclude=[train], ks=(5,))
    np.testing.assert_array_equal(result.users["test"], [0])
    assert result.counts["test"] == {"users": 1, "skipped_users": 2, "relevant": 1, "relevant_excluded": 1}
    assert "cannot be recommended" in caplog.text


def test_splits_with_the_same_exclusion_share_one_scoring_pass_and_per_split_exclusion_works():
    train, valid, test = _random_split(3)
    calls = []
    scores = np.random.default_rng(3).random((N_USERS, N_ITEMS))

    def scorer(users):
        calls.append(len(users))
        return scores[users]

    both = evaluate(scorer, {"test": test, "clean": test}, exclude=[train, valid], ks=(5,), batch_size=1000)
    assert sum(calls) == len(np.unique(test.user))
    assert both.per_user["test/ndcg@5"].tolist() == both.per_user["clean/ndcg@5"].tolist()
    per_split = evaluate(scorer, {"valid": valid, "test": test}, exclude={"valid": [train], "test": [train, valid]})
    for split, excluded in (("valid", [train]), ("test", [train, valid])):
        _, expected = _reference(scores, {"valid": valid, "test": test}[split], excluded, (10,))
        np.testing.assert_allclose(per_split.per_user[f"{split}/recall@10"], expected["recall@10"])


def test_torch_and_numpy_scorers_agree_and_scores_are_not_modified():
    test_items = np.random.default_rng(4).integers(0, N_ITEMS, N_USERS)
    test = _data(np.arange(N_USERS), test_items)  # every user counts, so batches are contiguous
    train = _data(np.arange(N_USERS), (test_items + 1) % N_ITEMS)
    U, V = torch.randn(N_USERS, 8, generator=torch.Generator().manual_seed(0)), torch.randn(N_ITEMS, 8)
    full = (U @ V.T).numpy()
    kept = full.copy()
    a = evaluate(lambda u: U[torch.from_numpy(u)] @ V.T, {"test": test}, exclude=[train])
    # A scorer that hands out a view of its own matrix: masking must not leave a trace in it.
    b = evaluate(lambda u: full[u[0]:u[-1] + 1], {"test": test}, exclude=[train], batch_size=7)
    np.testing.assert_array_equal(full, kept)
    assert a.metrics == pytest.approx(b.metrics)


def test_bad_scores_are_clear_errors():
    _, _, test = _random_split(5)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda u: np.full((len(u), N_ITEMS), np.nan), {"test": test})
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda u: np.zeros((len(u), N_ITEMS - 1)), {"test": test})
    with pytest.raises(UserInputError, match="different id vocabularies"):
        evaluate(lambda u: np.zeros((len(u), N_ITEMS)), {"test": test}, exclude=[_data([0], [0], n_items=99)])
    with pytest.raises(UserInputError, match="positive integers"):
        evaluate(lambda u: np.zeros((len(u), N_ITEMS)), {"test": test}, ks=(0,))


def test_popularity_defaults_to_training_counts_and_beyond_accuracy_metrics_are_reported():
    train = _data([0, 1, 2, 3], [4, 4, 4, 7])
    test = _data([5, 6], [1, 2])
    scores = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    scores[:, [4, 7]] = [2.0, 1.0]
    result = evaluate(lambda u: scores[u], {"test": test}, exclude=[train], ks=(2,))
    # Users 5 and 6 have no train items, so both see items 4 and 7 (popularity 3 and 1).
    assert result.metrics["test/avg_popularity@2"] == pytest.approx(2.0)
    assert result.metrics["test/coverage@2"] == pytest.approx(2 / N_ITEMS)
    assert result.metrics["test/gini@2"] == pytest.approx((N_ITEMS - 2) / N_ITEMS)


def test_sampled_mode_is_labelled_seeded_and_batch_size_independent():
    train, _, test = _random_split(6)
    scores = np.random.default_rng(6).random((N_USERS, N_ITEMS))
    run = lambda bs, seed=0: evaluate(lambda u: scores[u], {"test": test}, exclude=[train], ks=(5,),  # noqa: E731
                                      sampled_negatives=5, seed=seed, batch_size=bs)
    a, b, c = run(3), run(100), run(3, seed=1)
    assert a.protocol["ranking"] == "sampled" and a.protocol["negatives"] == 5
    assert set(a.metrics) == {f"test_sampled5/{m}@5" for m in
                              ("recall", "precision", "f1", "ndcg", "mrr", "hit_rate", "map")}
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics
    # With more negatives than items the sampled ranking is the full ranking.
    full = evaluate(lambda u: scores[u], {"test": test}, exclude=[train], ks=(5,))
    everything = evaluate(lambda u: scores[u], {"test": test}, exclude=[train], ks=(5,), sampled_negatives=10_000)
    assert {k.replace("_sampled10000", ""): v for k, v in everything.metrics.items()} == pytest.approx(
        {k: v for k, v in full.metrics.items() if k.split("/")[1].split("@")[0] not in
         ("coverage", "gini", "avg_popularity")})


def test_sampled_candidates_hold_relevant_items_and_only_allowed_negatives():
    from recsys.evaluation.ranking import sample_candidates

    relevant = UserItemSet.from_pairs([0, 0, 1], [1, 2, 3], 2, 50)
    hidden = UserItemSet.from_pairs([0, 1], [5, 6], 2, 50)
    chosen = sample_candidates(np.array([0, 1]), relevant, hidden, n_negatives=10, seed=0)
    for user, rel, hid in ((0, {1, 2}, {5}), (1, {3}, {6})):
        items = set(chosen.items_of(user).tolist())
        assert rel <= items and not (hid & items) and len(items) == len(rel) + 10


def test_lists_from_an_outside_system_score_like_the_built_in_ranking():
    train, _, test = _random_split(7)
    scores = np.random.default_rng(7).random((N_USERS, N_ITEMS))
    direct = evaluate(lambda u: scores[u], {"test": test}, exclude=[train], ks=(3, 5))
    # An outside system that does not mask train items: the evaluator removes them.
    order = np.argsort(-scores, axis=1)[:, :12]
    recs = pd.DataFrame({"user": np.repeat(np.arange(N_USERS), 12).astype(str), "item": order.ravel().astype(str),
                         "rank": np.tile(np.arange(1, 13), N_USERS)})
    from_lists = evaluate_lists(recs, {"test": test}, exclude=[train], ks=(3, 5))
    assert from_lists.metrics == pytest.approx(direct.metrics)
    by_score = evaluate_lists(recs.assign(score=-recs["rank"]).drop(columns="rank"), {"test": test},
                              exclude=[train], ks=(3, 5))
    assert by_score.metrics == pytest.approx(direct.metrics)


def test_outside_lists_with_bad_rows_are_errors_naming_the_row():
    _, _, test = _random_split(8)
    good = pd.DataFrame({"user": ["0", "0"], "item": ["1", "2"], "rank": [1, 2]})
    cases = [(good.drop(columns="rank"), "'rank' or a 'score'"), (good.assign(rank=[1, 1.5]), "row 1, field 'rank'"),
             (good.assign(rank=[1, 1]), "rank 1 twice"), (good.assign(item=["1", "1"]), "twice"),
             (good.assign(item=["1", "nope"]), "not in the vocabulary")]
    for frame, message in cases:
        with pytest.raises(UserInputError, match=message):
            evaluate_lists(frame, {"test": test})


def test_result_round_trips_through_json():
    train, _, test = _random_split(9)
    result = evaluate(lambda u: np.random.default_rng(1).random((len(u), N_ITEMS)), {"test": test}, exclude=[train])
    back = EvaluationResult.from_json(result.to_json(per_user=True))
    assert back.metrics == result.metrics and back.ks == result.ks and back.counts == result.counts
    np.testing.assert_array_equal(back.users["test"], result.users["test"])
    np.testing.assert_array_equal(back.per_user["test/ndcg@10"], result.per_user["test/ndcg@10"])


def test_batch_size_follows_the_memory_budget():
    assert batch_size_for(50_000, memory_budget_mb=256) * 50_000 * 12 <= 256 * 2**20
    assert batch_size_for(50_000, memory_budget_mb=256) >= 400
    assert batch_size_for(10**9, memory_budget_mb=1) == 1


def test_a_csr_built_elsewhere_with_unsorted_rows_is_canonicalized():
    pairs = UserItemSet(np.array([0, 3, 4]), np.array([7, 2, 7, 5]), n_items=10)
    np.testing.assert_array_equal(pairs.indptr, [0, 2, 3])
    np.testing.assert_array_equal(pairs.indices, [2, 7, 5])
    np.testing.assert_array_equal(pairs.contains(np.array([0, 1]), np.array([[2, 7, 5], [5, 2, -1]])),
                                  [[True, True, False], [True, False, False]])
