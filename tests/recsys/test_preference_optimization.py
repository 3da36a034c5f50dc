"""DPO / S-DPO over semantic-ID likelihoods, the frozen reference, ranking accuracy, and the pairs from the data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from recsys.errors import UserInputError
from recsys.models.generative import GenerativeRetriever
from recsys.models.generative_data import leave_last_out
from recsys.models.preference_optimization import (
    PreferenceOptimization,
    dpo_loss,
    item_log_likelihood,
    likelihood_accuracy,
    ranking_accuracy,
    save_retriever,
    sdpo_loss,
)
from recsys.preferences.pairs import KINDS, PairDataset, build_pairs, negative_training_queries
from tests.recsys.test_discern import table_and_timeline, unit
from tests.recsys.test_generative import random_ids, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# policy / reference log-likelihoods of one chosen and two rejected items, two queries
PC, PR = torch.tensor([-1.0, -2.0]), torch.tensor([[-3.0, -1.5], [-2.5, -4.0]])
RC, RR = torch.tensor([-1.5, -1.0]), torch.tensor([[-2.0, -2.0], [-3.0, -3.0]])


def test_dpo_and_sdpo_match_a_hand_computation():
    beta = 0.5
    chosen = [-1.0 + 1.5, -2.0 + 1.0]  # log-ratios: 0.5, -1.0
    rejected = [[-3.0 + 2.0, -1.5 + 2.0], [-2.5 + 3.0, -4.0 + 3.0]]  # [-1, 0.5], [0.5, -1]
    dpo = -np.mean([log_sigmoid(beta * (c - r)) for c, rs in zip(chosen, rejected) for r in rs])
    sdpo = -np.mean([log_sigmoid(-math.log(sum(math.exp(beta * (r - c)) for r in rs)))
                     for c, rs in zip(chosen, rejected)])
    assert dpo_loss(PC, PR, RC, RR, beta).item() == pytest.approx(dpo, abs=1e-6)
    assert sdpo_loss(PC, PR, RC, RR, beta).item() == pytest.approx(sdpo, abs=1e-6)
    # one rejected item: S-DPO is DPO; a masked rejected item does not count
    assert sdpo_loss(PC, PR[:, :1], RC, RR[:, :1], beta).item() == pytest.approx(
        dpo_loss(PC, PR[:, :1], RC, RR[:, :1], beta).item(), abs=1e-7)
    mask = torch.tensor([[True, False], [True, False]])
    assert sdpo_loss(PC, PR, RC, RR, beta, mask).item() == pytest.approx(
        sdpo_loss(PC, PR[:, :1], RC, RR[:, :1], beta).item(), abs=1e-7)
    assert dpo_loss(PC, PR, RC, RR, beta, mask).item() == pytest.approx(
        dpo_loss(PC, PR[:, :1], RC, RR[:, :1], beta).item(), abs=1e-7)


def test_ranking_accuracy_counts_pairs_by_log_ratio_not_likelihood():
    # log-ratio wins: query 0: 0.5 > -1 yes, 0.5 > 0.5 no; query 1: -1 > 0.5 no, -1 > -1 no -> 1 of 4
    assert ranking_accuracy(PC, PR, RC, RR).item() == pytest.approx(0.25)
    # likelihood wins: -1 > -3 yes, -1 > -1.5 yes, -2 > -2.5 yes, -2 > -4 yes
    assert likelihood_accuracy(PC, PR).item() == pytest.approx(1.0)
    mask = torch.tensor([[True, False], [False, True]])
    assert ranking_accuracy(PC, PR, RC, RR, mask).item() == pytest.approx(0.5)


def pairs_batch(model: GenerativeRetriever, n: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    n_items = model.hparams.n_items
    history = torch.as_tensor(rng.integers(0, n_items, size=(n, 4)))
    chosen = torch.as_tensor(rng.integers(0, n_items, size=n))
    rejected = torch.as_tensor((chosen.numpy()[:, None] + rng.integers(1, n_items, size=(n, 3))) % n_items)
    return {"history": history, "chosen": chosen, "rejected": rejected, "rejected_mask": rejected >= 0}


def test_item_log_likelihood_is_the_sum_of_level_log_probabilities():
    ids = random_ids(30, size=4)
    model = tiny_model("tiger", ids).eval()
    history = torch.tensor([[0, 1, 2], [-1, 3, 4]])
    memory, padding = model.encode(history)
    items = torch.tensor([[5, 6], [7, 8]])
    with torch.no_grad():
        got = item_log_likelihood(model, memory, padding, items)
        for b in range(2):
            for c in range(2):
                codes = model.item_codes[items[b, c]][None]
                logits = model.decode(memory[b:b + 1], padding[b:b + 1], codes[:, :-1])
                expected = sum(torch.log_softmax(model.level_logits(logits[:, lv], lv), -1)[0, codes[0, lv]]
                               for lv in range(model.n_levels))
                assert got[b, c].item() == pytest.approx(expected.item(), abs=1e-5)


def test_the_reference_is_frozen_and_training_moves_the_policy_toward_the_chosen_items(tmp_path):
    ids = random_ids(30, size=4)
    base = tiny_model("tiger", ids)
    module = PreferenceOptimization(policy=base, beta=1.0, n_negatives=3, lr=3e-3)
    assert all(not p.requires_grad for p in module.reference.parameters())
    reference_before = {k: v.clone() for k, v in module.reference.state_dict().items()}
    policy_before = {k: v.clone() for k, v in module.policy.state_dict().items()}
    batch = pairs_batch(base)
    module.train()
    assert not module.reference.training
    optimizer = module.configure_optimizers()
    first = module.step(batch)
    assert first["chosen_log_ratio"].item() == pytest.approx(0.0, abs=1e-4)  # policy == reference at the start
    assert first["loss"].item() == pytest.approx(-log_sigmoid(-math.log(3)), abs=1e-4)  # S-DPO at equal ratios
    for _ in range(40):
        optimizer.zero_grad()
        module.step(batch)["loss"].backward()
        optimizer.step()
    last = module.step(batch)
    assert last["loss"].item() < first["loss"].item() - 0.2
    assert last["ranking_accuracy"].item() > 0.8
    assert all(torch.equal(v, module.reference.state_dict()[k]) for k, v in reference_before.items())
    assert any(not torch.equal(v, module.policy.state_dict()[k]) for k, v in policy_before.items())
    # the fine-tuned policy saves as an ordinary retriever checkpoint
    path = module.save_policy(tmp_path / "dpo" / "best.ckpt")
    loaded = GenerativeRetriever.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    assert loaded.prefengine_meta["preference_optimization"]["objective"] == "sdpo"
    for key, value in module.policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    items, _ = loaded.recommend(np.array([[0, 1, 2]]), k=3)
    assert len(set(items[0].tolist())) == 3


def test_it_starts_from_a_checkpoint_and_rejects_bad_settings(tmp_path):
    ids = random_ids(30, size=4)
    path = save_retriever(tiny_model("tiger", ids), tmp_path / "sft.ckpt")
    module = PreferenceOptimization(checkpoint=str(path), objective="dpo")
    assert module.policy.hparams.n_items == 30 and module.hparams.objective == "dpo"
    with pytest.raises(UserInputError, match="objective"):
        PreferenceOptimization(checkpoint=str(path), objective="ipo")
    with pytest.raises(UserInputError, match="beta"):
        PreferenceOptimization(checkpoint=str(path), beta=0.0)
    with pytest.raises(UserInputError, match="not found"):
        PreferenceOptimization(checkpoint=str(tmp_path / "missing.ckpt"))


def test_polarity_is_an_embedding_that_separates_a_like_from_its_dislike():
    ids = random_ids(30, size=4)
    model = tiny_model("mender", ids, preference_polarity=True).eval()
    history = torch.tensor([[0, 1, 2]])
    prefs = torch.randn(1, 1, 8)
    mask = torch.ones(1, 1, dtype=torch.bool)
    like, _ = model.encode(history, prefs, mask, torch.tensor([[False]]))
    dislike, _ = model.encode(history, prefs, mask, torch.tensor([[True]]))
    default, _ = model.encode(history, prefs, mask)
    assert torch.equal(like, default) and not torch.allclose(like, dislike)
    plain = tiny_model("mender", ids).eval()
    assert not hasattr(plain, "polarity") and "polarity.weight" in model.state_dict()


# ---------------------------------------------------------------------------------------------
# pairs from the data
# ---------------------------------------------------------------------------------------------
def test_pairs_come_from_training_positions_only():
    # item embeddings: 0-3 "red", 4-7 "blue", 8-11 "green"
    items = unit([[1, 0, 0]] * 4 + [[0, 1, 0]] * 4 + [[0, 0.05, 1]] * 4)
    sequences = [np.array([0, 4, 8, 1, 5, 9, 2]), np.array([3, 9, 6, 10, 7, 11])]
    steps = {(u, s): [0, 1, 2] for u in range(2) for s in range(8)}
    table, timeline = table_and_timeline(steps)
    split = leave_last_out(sequences, max_history=3)
    review_negative = {(0, 8), (1, 9), (0, 5)}
    ratings = {(0, 4): 5.0, (0, 1): 1.0, (1, 6): 4.0}
    pairs = build_pairs(sequences, split.train, timeline, table, items, review_negative, ratings, n_negatives=3)
    counts = pairs.counts()
    assert set(counts) == set(KINDS) and counts["positive"] == len(split.train)
    held_out = {(u, int(s[-1])) for u, s in enumerate(sequences)} | {(u, int(s[-2])) for u, s in enumerate(sequences)}
    for kind, user, step, prefs, chosen, rejected in zip(pairs.kind, pairs.user, pairs.step, pairs.preferences,
                                                         pairs.chosen, pairs.rejected):
        name = KINDS[kind]
        assert (int(user), int(chosen)) not in held_out or name != "negative_twin"
        real = rejected[rejected >= 0]
        assert len(real) and chosen not in real and len(set(real.tolist())) == len(real)
        if name == "negative_twin":
            target = sequences[user][step]
            assert table.negative[prefs[0]] and real[0] == target and chosen == sequences[user][step + 1]
            assert step + 1 <= len(sequences[user]) - 3  # the chosen item is a training position
            assert set(real[1:].tolist()) <= set(range(8, 12)) - {target}  # what "Avoid green toys" describes
        elif name == "positive_twin":
            assert not table.negative[prefs[0]] and table.inverted[2] == prefs[0] and chosen == sequences[user][step]
        elif name == "low_rated":
            assert (int(user), int(chosen)) == (0, 4) and real.tolist() == [1]
        else:
            assert not set(real.tolist()) & set(sequences[user][:step].tolist())
    # user 0 step 2 (item 8, reviewed negatively): both twins; user 0 step 4 (item 5): its next item 9 is a
    # held-out position, so only the positive twin
    twins = {(int(u), int(s), KINDS[k]) for k, u, s in zip(pairs.kind, pairs.user, pairs.step) if "twin" in KINDS[k]}
    assert {(0, 2, "negative_twin"), (0, 2, "positive_twin"), (0, 4, "positive_twin")} <= twins
    assert (0, 4, "negative_twin") not in twins
    extra, prefs = negative_training_queries(sequences, split.train, timeline, table, items, review_negative)
    assert len(extra) == len(prefs) == sum(counts[k] for k in ("positive_twin", "negative_twin"))
    batch = next(iter(DataLoader(PairDataset(pairs, table, width=2, polarity=True), batch_size=len(pairs))))
    assert batch["pref_negative"].any() and batch["prefs"].shape == (len(pairs), 2, 3)
    assert (batch["pref_negative"] <= batch["pref_mask"]).all()


def test_sequences_without_preferences_give_the_next_item_over_unseen_random_items():
    sequences = [np.array([0, 1, 2, 3, 4, 5]), np.array([6, 7, 8, 9, 10])]
    split = leave_last_out(sequences, max_history=3)
    pairs = build_pairs(sequences, split.train, None, None, None, set(), n_negatives=4, kinds=["positive"],
                        n_items=40)
    assert pairs.counts()["positive"] == len(pairs) == len(split.train)
    assert all(p.size == 0 for p in pairs.preferences)  # no preference text in the query
    for user, step, chosen, rejected in zip(pairs.user, pairs.step, pairs.chosen, pairs.rejected):
        assert chosen == sequences[user][step] and len(set(rejected.tolist())) == 4
        assert not set(rejected.tolist()) & (set(sequences[user][:step].tolist()) | {int(chosen)})
    assert int(pairs.rejected.max()) >= 11  # negatives come from the whole catalog, not only the sequences
    batch = next(iter(DataLoader(PairDataset(pairs, None, width=0), batch_size=len(pairs))))
    assert "prefs" not in batch and batch["rejected_mask"].all()
    with pytest.raises(ValueError, match="only 'positive'"):
        build_pairs(sequences, split.train, None, None, None, set(), kinds=["positive", "low_rated"], n_items=40)
