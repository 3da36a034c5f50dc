"""Beam search over semantic IDs, constrained by a prefix trie so that only existing items come out.

Pure numpy, so the one search drives the torch model (`recsys.models.generative`), its ONNX export
(`recsys.export.generative`) and the server (`serving.generative`), which imports no torch.
The model is reached through a step function: given, for each live beam, the query it belongs to
and the codes generated so far, it returns logits over the next level's codes. The search takes
log-softmax over the whole level (scores stay the model's log-probabilities of the item), sets
codes with no child in the trie to -inf, and keeps the `beam_size` best prefixes per query. A
full-length prefix is a leaf, i.e. exactly one item, so the final beams are distinct items, best
first. Items to exclude (e.g. those already seen) are removed by blocking every trie node whose
leaves are all excluded, so the search never spends a beam on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

StepFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


class PrefixTrie:
    """Valid code tuples as a trie with dense child tables, one per depth.

    `child[d]` (n_nodes at depth d, level_sizes[d]) holds the node id at depth d+1 reached by each
    code, -1 where no item continues; depth 0 is the root. `leaf_item[node]` is the item of a
    full-length prefix; `leaf_count[d][node]` counts the items below a node; `item_nodes[i, d]`
    is the node of item i's prefix of length d.
    """

    def __init__(self, codes: np.ndarray, level_sizes: Sequence[int]):
        codes = np.asarray(codes, dtype=np.int64)
        n_items, depth = codes.shape
        self.level_sizes = tuple(int(s) for s in level_sizes)
        if len(self.level_sizes) != depth:
            raise ValueError(f"{depth} code levels but {len(self.level_sizes)} level sizes")
        self.item_nodes = np.zeros((n_items, depth + 1), dtype=np.int64)
        self.child: list[np.ndarray] = []
        self.leaf_count: list[np.ndarray] = [np.array([n_items], dtype=np.int64)]
        for d in range(1, depth + 1):
            _, node, counts = np.unique(codes[:, :d], axis=0, return_inverse=True, return_counts=True)
            node = node.reshape(-1)
            table = np.full((len(self.leaf_count[-1]), self.level_sizes[d - 1]), -1, dtype=np.int64)
            table[self.item_nodes[:, d - 1], codes[:, d - 1]] = node
            self.child.append(table)
            self.item_nodes[:, d] = node
            self.leaf_count.append(counts.astype(np.int64))
        if len(self.leaf_count[-1]) != n_items:
            raise ValueError("two items share the same semantic ID; semantic IDs must be unique")
        self.leaf_item = np.empty(n_items, dtype=np.int64)
        self.leaf_item[self.item_nodes[:, depth]] = np.arange(n_items)
        self.codes = codes

    @property
    def depth(self) -> int:
        return len(self.level_sizes)

    @property
    def n_items(self) -> int:
        return len(self.codes)

    def n_nodes(self, depth: int) -> int:
        return len(self.leaf_count[depth])

    def blocked(self, rows: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
        """Per depth, sorted keys row * n_nodes + node of the nodes whose items are all in (row, item) pairs."""
        rows, items = np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64)
        keep = (items >= 0) & (items < self.n_items)
        pairs = np.unique(np.stack([rows[keep], items[keep]], axis=1), axis=0) if keep.any() else \
            np.zeros((0, 2), dtype=np.int64)
        out = [np.zeros(0, dtype=np.int64)]
        for d in range(1, self.depth + 1):
            width = np.int64(self.n_nodes(d))
            keys, counts = np.unique(pairs[:, 0] * width + self.item_nodes[pairs[:, 1], d], return_counts=True)
            out.append(keys[counts == self.leaf_count[d][keys % width]])
        return out


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def exclusion_pairs(exclude: Sequence[Sequence[int]] | None) -> tuple[np.ndarray, np.ndarray]:
    """(query row, item) pairs from one list of items per query."""
    if exclude is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lengths = np.array([len(e) for e in exclude], dtype=np.int64)
    rows = np.repeat(np.arange(len(exclude), dtype=np.int64), lengths)
    items = np.concatenate([np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude]) if lengths.sum() else \
        np.zeros(0, dtype=np.int64)
    return rows, items


def beam_search(step: StepFunction, n_queries: int, trie: PrefixTrie, beam_size: int, k: int | None = None,
                exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per query: (items (n_queries, k) int64, -1 where fewer exist; log-probabilities).

    step(query_rows (N,), prefix (N, d)) -> logits (N, level_sizes[d]) for the live beams.
    `exclude`: per query, items that must not come out (at most beam_size are returned anyway).
    """
    k = beam_size if k is None else int(k)
    if beam_size < 1 or not 1 <= k <= beam_size:
        raise ValueError(f"need 1 <= k <= beam_size, got k={k}, beam_size={beam_size}")
    blocked = trie.blocked(*exclusion_pairs(exclude))
    width = 1
    nodes = np.zeros((n_queries, 1), dtype=np.int64)
    scores = np.zeros((n_queries, 1))
    prefix = np.zeros((n_queries, 1, 0), dtype=np.int64)
    query = np.arange(n_queries, dtype=np.int64)
    for d in range(trie.depth):
        size = trie.level_sizes[d]
        live = np.isfinite(scores)
        rows_q, rows_b = np.nonzero(live)
        logp = np.zeros((n_queries, width, size))
        if len(rows_q):
            logits = np.asarray(step(query[rows_q], prefix[rows_q, rows_b]))
            if logits.shape != (len(rows_q), size):
                raise ValueError(f"step returned shape {logits.shape}, expected {(len(rows_q), size)} at level {d}")
            logp[rows_q, rows_b] = _log_softmax(logits)
        children = trie.child[d][np.where(live, nodes, 0)]  # (Q, W, size)
        valid = (children >= 0) & live[:, :, None]
        if len(blocked[d + 1]):
            keys = query[:, None, None] * np.int64(trie.n_nodes(d + 1)) + children
            valid &= ~np.isin(keys, blocked[d + 1])
        candidates = np.where(valid, scores[:, :, None] + logp, -np.inf).reshape(n_queries, width * size)
        keep = min(beam_size, width * size)
        # Best first; equal scores by candidate position (beam order, then code), so results repeat exactly.
        order = np.argsort(-candidates, axis=1, kind="stable")[:, :keep]
        beam, code = np.divmod(order, size)
        scores = np.take_along_axis(candidates, order, axis=1)
        nodes = np.take_along_axis(children.reshape(n_queries, width * size), order, axis=1)
        prefix = np.concatenate([np.take_along_axis(prefix, beam[:, :, None], axis=1), code[:, :, None]], axis=2)
        width = keep
    items = np.where(np.isfinite(scores), trie.leaf_item[np.maximum(nodes, 0)], -1)
    if width < k:
        items = np.pad(items, ((0, 0), (0, k - width)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, k - width)), constant_values=-np.inf)
    return items[:, :k], scores[:, :k]
