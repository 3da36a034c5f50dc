"""The generative retriever: the prefix trie, constrained beam search, leave-last-out examples, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bundleformat.beam_search import PrefixTrie, beam_search
from recsys.data.interactions import IdVocab, InteractionData
from recsys.data.splits import leave_one_out
from recsys.models.generative import GenerativeRetriever
from recsys.models.generative_data import GenerativeDataset, leave_last_out, pad_ids, preference_arrays
from recsys.models.semantic_ids import SemanticIds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_ids(n_items: int = 40, size: int = 3, seed: int = 0) -> SemanticIds:
    return SemanticIds.from_codes(np.random.default_rng(seed).integers(0, size, size=(n_items, 3)), [size] * 3)


def tiny_model(variant: str, ids: SemanticIds, text: np.ndarray | None = None, **options) -> GenerativeRetriever:
    torch.manual_seed(0)
    settings = dict(variant=variant, n_items=ids.n_items, level_sizes=ids.level_sizes, text_dim=8, d_model=16,
                    n_heads=2, encoder_layers=1, decoder_layers=1, ff_dim=32, dropout=0.0, max_history=6, warmup_steps=0)
    model = GenerativeRetriever(**{**settings, **options})
    rng = np.random.default_rng(1)
    model.set_items(ids.codes, text if text is not None else rng.normal(size=(ids.n_items, 8)).astype(np.float32))
    return model


# ---------------------------------------------------------------------------------------------
# trie and beam search
# ---------------------------------------------------------------------------------------------
def test_trie_children_and_counts_match_brute_force():
    ids = random_ids(60, size=4, seed=3)
    trie = PrefixTrie(ids.codes, ids.level_sizes)
    for depth in range(trie.depth):
        for item in range(ids.n_items):
            node = trie.item_nodes[item, depth]
            same_prefix = np.all(ids.codes[:, :depth] == ids.codes[item, :depth], axis=1)
            expected = set(ids.codes[same_prefix, depth].tolist())
            assert set(np.flatnonzero(trie.child[depth][node] >= 0).tolist()) == expected
            assert trie.leaf_count[depth][node] == same_prefix.sum()
    assert np.array_equal(trie.leaf_item[trie.item_nodes[:, -1]], np.arange(ids.n_items))


def test_trie_blocks_exactly_the_nodes_whose_items_are_all_excluded():
    ids = SemanticIds(np.array([[0, 0], [0, 1], [1, 0]]), (2, 2))
    trie = PrefixTrie(ids.codes, ids.level_sizes)
    blocked = trie.blocked(np.array([0, 0, 1]), np.array([0, 1, 0]))
    root_child_0 = trie.item_nodes[0, 1]
    assert blocked[1].tolist() == [0 * trie.n_nodes(1) + root_child_0]  # row 0 excluded items 0 and 1
    assert sorted(blocked[2].tolist()) == sorted([0 * 3 + trie.item_nodes[0, 2], 0 * 3 + trie.item_nodes[1, 2],
                                                  1 * 3 + trie.item_nodes[0, 2]])


def random_step(seed: int, sizes):
    rng = np.random.default_rng(seed)
    return lambda rows, prefix: rng.normal(size=(len(rows), sizes[prefix.shape[1]])) * 3


@pytest.mark.parametrize("seed", range(5))
def test_constrained_search_returns_only_valid_unseen_distinct_items(seed):
    ids = random_ids(50, size=4, seed=seed)
    trie = PrefixTrie(ids.codes, ids.level_sizes)
    rng = np.random.default_rng(seed)
    exclude = [rng.choice(50, size=rng.integers(0, 49), replace=False) for _ in range(30)]
    exclude[0] = np.arange(47)  # only items 47, 48, 49 remain
    items, scores = beam_search(random_step(seed, ids.level_sizes), 30, trie, beam_size=12, k=10, exclude=exclude)
    for row, (found, excluded) in enumerate(zip(items, exclude)):
        real = found[found >= 0]
        assert ((real >= 0) & (real < 50)).all() and len(set(real.tolist())) == len(real)
        assert not set(real.tolist()) & set(excluded.tolist())
        assert len(real) == min(10, 50 - len(excluded))  # never short while unseen items remain
        assert np.all(np.diff(scores[row][: len(real)]) <= 1e-12)
    assert sorted(items[0][:3].tolist()) == [47, 48, 49] and (items[0][3:] == -1).all()


def item_log_probs(model: GenerativeRetriever, history, prefs=None, mask=None) -> np.ndarray:
    """Brute force: the model's log-probability of every item's full ID, by teacher forcing."""
    model.eval()
    n = model.hparams.n_items
    codes = model.item_codes[:n]
    out = np.zeros((len(history), n))
    with torch.no_grad():
        memory, padding = model.encode(torch.as_tensor(history), None if prefs is None else torch.as_tensor(prefs),
                                       None if mask is None else torch.as_tensor(mask))
        for q in range(len(history)):
            logits = model.decode(memory[q:q + 1].expand(n, -1, -1), padding[q:q + 1].expand(n, -1), codes[:, :-1])
            for level in range(model.n_levels):
                logp = torch.log_softmax(model.level_logits(logits[:, level], level), dim=-1)
                out[q] += logp[torch.arange(n), codes[:, level]].numpy()
    return out


@pytest.mark.parametrize("variant", ["tiger", "mender"])
def test_wide_beam_search_equals_brute_force_ranking(variant):
    ids = random_ids(30, size=3)
    model = tiny_model(variant, ids)
    rng = np.random.default_rng(2)
    history = rng.integers(-1, 30, size=(5, 6))
    prefs = rng.normal(size=(5, 2, 8)).astype(np.float32)
    mask = np.array([[True, False]] * 4 + [[False, False]])
    exclude = [h[h >= 0] for h in history]
    items, scores = model.recommend(history, prefs, mask, k=10, beam_size=30, exclude=exclude)
    reference = item_log_probs(model, history, prefs if variant == "mender" else None, mask)
    for q, seen in enumerate(exclude):
        reference[q, seen] = -np.inf
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(reference, items, axis=1), atol=1e-5)


def test_preferences_change_mender_but_not_tiger():
    ids = random_ids(30, size=3)
    history = np.array([[-1, -1, 3, 4, 5, 6]])
    a, b = np.ones((1, 1, 8), np.float32), -np.ones((1, 1, 8), np.float32)
    mask = np.ones((1, 1), bool)
    for variant, differs in (("tiger", False), ("mender", True)):
        model = tiny_model(variant, ids)
        first = model.recommend(history, a, mask, k=5, beam_size=10)[1]
        second = model.recommend(history, b, mask, k=5, beam_size=10)[1]
        assert (not np.allclose(first, second)) == differs


# ---------------------------------------------------------------------------------------------
# data and learning
# ---------------------------------------------------------------------------------------------
def test_leave_last_out_matches_the_pair_split_on_sequences_without_repeats():
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(20)[: rng.integers(1, 9)] for _ in range(25)]
    split = leave_last_out(sequences, max_history=4)
    users = np.repeat(np.arange(25), [len(s) for s in sequences])
    times = np.concatenate([np.arange(len(s)) for s in sequences])
    data = InteractionData(users, np.concatenate(sequences), times, IdVocab.range(25, 20))
    pairs = leave_one_out(data)
    for part, ours in (("test", split.test), ("valid", split.valid)):
        reference = getattr(pairs, part)
        assert sorted(zip(ours.user.tolist(), ours.target.tolist())) == \
            sorted(zip(reference.user.tolist(), reference.item.tolist()))
    assert len(split.train) == sum(max(len(s) - 3, 0) for s in sequences)
    for user, step, history, target in zip(split.train.user, split.train.step, split.train.history, split.train.target):
        seq = sequences[user]
        assert target == seq[step] and 1 <= step <= len(seq) - 3
        expected = seq[max(0, step - 4):step]
        assert history[4 - len(expected):].tolist() == expected.tolist() and (history[:4 - len(expected)] == -1).all()


def test_dataset_gathers_preference_embeddings_with_a_mask():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = [np.array([2]), np.array([], dtype=np.int64), np.array([0, 3, 1])]
    padded = pad_ids(ids, 2)
    assert padded.tolist() == [[2, -1], [-1, -1], [0, 3]]
    split = leave_last_out([np.arange(6)] * 3, max_history=3)
    row = GenerativeDataset(split.train.subset(slice(0, 3)), padded, table)[2]
    assert row["pref_mask"].tolist() == [True, True]
    np.testing.assert_array_equal(row["prefs"].numpy(), table[[0, 3]])
    prefs, mask = preference_arrays(ids, table, 2)
    assert mask.tolist() == [[True, False], [False, False], [True, True]] and (prefs[1] == 0).all()


@pytest.mark.parametrize("variant", ["tiger", "mender"])
def test_the_model_learns_a_deterministic_next_item_rule(variant):
    """Item i is always followed by item (i + 7) mod n: after training, the top-1 generated item is right."""
    n = 24
    ids = random_ids(n, size=3, seed=5)
    model = tiny_model(variant, ids, lr=1e-2, d_model=32, ff_dim=64)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n, 200)
    sequences = [(s + 7 * np.arange(10)) % n for s in starts]  # training covers every history length up to 6
    split = leave_last_out(sequences, max_history=6)
    loader = torch.utils.data.DataLoader(GenerativeDataset(split.train), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(8):
        for batch in loader:
            loss = model.loss(batch)
            first = first if first is not None else loss.item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert loss.item() < 0.2 * first
    items, _ = model.recommend(split.test.history, k=1, beam_size=5)
    assert (items[:, 0] == split.test.target).mean() > 0.9
