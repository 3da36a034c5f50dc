"""The batched beam search returns exactly the lists of the per-query search, ties and exclusions included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bundleformat.beam_search import PrefixTrie, beam_search
from recsys.models.beam_search_batched import DeviceTrie, batched_beam_search
from recsys.models.generative import GenerativeRetriever
from recsys.models.semantic_ids import SemanticIds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TableDecoder:
    """A decoder whose logits are a fixed function of (query, prefix): coarse integers, so ties abound."""

    def __init__(self, n_queries: int, sizes, seed: int):
        self.n_queries, self.sizes, self.seed = n_queries, sizes, seed
        self.prefix = torch.zeros((n_queries, 0), dtype=torch.int64)
        self.query = torch.arange(n_queries)

    def logits(self, query: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        level = prefix.shape[1]
        rows = []
        for q, p in zip(query.tolist(), prefix.tolist()):
            rng = np.random.default_rng([self.seed, q, level, *p])
            rows.append(rng.integers(0, 3, self.sizes[level]).astype(np.float32))  # values 0, 1, 2: many ties
        return np.stack(rows)

    def start(self):
        return torch.as_tensor(self.logits(self.query.numpy(), self.prefix.numpy()))

    def advance(self, parents, codes, level):
        self.query = self.query[parents]
        self.prefix = torch.cat([self.prefix[parents], codes[:, None]], dim=1)
        return torch.as_tensor(self.logits(self.query.numpy(), self.prefix.numpy()))


@pytest.mark.parametrize("seed", range(4))
def test_search_equals_the_per_query_search_with_ties_and_exclusions(seed):
    rng = np.random.default_rng(seed)
    ids = SemanticIds.from_codes(rng.integers(0, 5, size=(150, 3)), [5] * 3)
    trie = PrefixTrie(ids.codes, ids.level_sizes)
    n = 200
    exclude = [rng.choice(150, size=rng.integers(0, 140), replace=False) for _ in range(n)]
    exclude[0] = np.arange(148)  # two items left: the lists end in -1
    table = TableDecoder(n, ids.level_sizes, seed)
    for beam, k in ((20, 10), (7, 7), (1, 1)):
        expected = []
        for q in range(n):
            # The per-query search numbers its one query 0: the table sees the real query id.
            def step(rows, prefix, q=q):
                return table.logits(np.full(len(rows), q), prefix)

            expected.append(beam_search(step, 1, trie, beam, k, [exclude[q]]))
        items, scores = batched_beam_search(TableDecoder(n, ids.level_sizes, seed), n, DeviceTrie(trie, "cpu"), beam,
                                            k, exclude)
        np.testing.assert_array_equal(items, np.concatenate([e[0] for e in expected]))
        np.testing.assert_array_equal(scores, np.concatenate([e[1] for e in expected]))
        assert (items[0, 2:] == -1).all()


def test_model_search_equals_the_per_query_search_on_many_users():
    rng = np.random.default_rng(0)
    ids = SemanticIds.from_codes(rng.integers(0, 8, size=(400, 3)), [8] * 3)
    torch.manual_seed(0)
    model = GenerativeRetriever(n_items=400, level_sizes=ids.level_sizes, d_model=32, n_heads=4, encoder_layers=2,
                                decoder_layers=2, ff_dim=64, dropout=0.1, max_history=8)
    model.set_items(ids.codes)
    with torch.no_grad():  # two codes of each level score the same: exact ties in every step
        for level in range(model.n_levels):
            start = int(model.offsets[level])
            model.head.weight[start + 1] = model.head.weight[start]
            model.head.bias[start + 1] = model.head.bias[start]
    n = 200
    history = np.where(rng.random((n, 8)) < 0.4, -1, rng.integers(0, 400, (n, 8)))
    history = np.sort(history, axis=1)  # left padding
    exclude = [h[h >= 0] for h in history]
    one_by_one = model.recommend(history, k=10, beam_size=20, exclude=exclude, search="per-query", batch_size=1)
    batched = model.recommend(history, k=10, beam_size=20, exclude=exclude, search="batched", batch_size=128)
    np.testing.assert_array_equal(batched[0], one_by_one[0])
    np.testing.assert_allclose(batched[1], one_by_one[1], atol=1e-5)
    assert model.training  # recommend restores the mode


class FullDecoder:
    """The `Decoder` protocol over the model's full decoder pass: every level re-reads BOS and the whole prefix."""

    def __init__(self, model: GenerativeRetriever, memory: torch.Tensor, padding: torch.Tensor):
        self.model, self.memory, self.padding = model, memory, padding
        self.query = torch.arange(len(memory))
        self.prefix = torch.zeros((len(memory), 0), dtype=torch.int64)

    def _logits(self) -> torch.Tensor:
        logits = self.model.decode(self.memory[self.query], self.padding[self.query], self.prefix)
        return self.model.level_logits(logits[:, -1], self.prefix.shape[1])

    def start(self):
        return self._logits()

    def advance(self, parents, codes, level):
        self.query = self.query[parents]
        self.prefix = torch.cat([self.prefix[parents], codes[:, None]], dim=1)
        return self._logits()


def test_incremental_decoder_equals_full_decoder(monkeypatch):
    """The cached one-token-per-beam decoder gives the full decoder's lists and scores, and recommend's default
    (batches of `CPU_BATCH_SIZE`, run on two threads at once) gives the per-query search's."""
    rng = np.random.default_rng(1)
    ids = SemanticIds.from_codes(rng.integers(0, 16, size=(600, 3)), [16] * 3)
    torch.manual_seed(1)
    model = GenerativeRetriever(n_items=600, level_sizes=ids.level_sizes, d_model=32, n_heads=4, encoder_layers=2,
                                decoder_layers=3, ff_dim=64, dropout=0.1, max_history=8).eval()
    model.set_items(ids.codes)
    n = 150
    history = np.sort(np.where(rng.random((n, 8)) < 0.4, -1, rng.integers(0, 600, (n, 8))), axis=1)
    exclude = [h[h >= 0] for h in history]
    with torch.no_grad():
        memory, padding = model.encode(torch.as_tensor(history))
        trie = DeviceTrie(model.trie, "cpu")
        full = batched_beam_search(FullDecoder(model, memory, padding), n, trie, 20, 10, exclude)
        incremental = batched_beam_search(model.incremental_decoder(memory, padding), n, trie, 20, 10, exclude)
    np.testing.assert_array_equal(incremental[0], full[0])
    np.testing.assert_allclose(incremental[1], full[1], atol=1e-5)
    assert (full[0] >= 0).all()

    one_by_one = model.recommend(history, k=10, beam_size=20, exclude=exclude, search="per-query", batch_size=1)
    monkeypatch.setattr("recsys.models.generative.CPU_BATCH_SIZE", 16)  # several batches for the two threads
    torch.set_num_threads(2)  # the fixture restores one thread
    default = model.recommend(history, k=10, beam_size=20, exclude=exclude)
    assert torch.get_num_threads() == 2  # recommend restores the thread count it found
    np.testing.assert_array_equal(default[0], one_by_one[0])
    np.testing.assert_allclose(default[1], one_by_one[1], atol=1e-5)
