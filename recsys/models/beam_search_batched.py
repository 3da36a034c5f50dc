"""The constrained beam search of `bundleformat.beam_search`, batched over many queries on the model's device.

Same rules, same results (the tests hold the two to equal item lists, ties included): log-softmax over
each level in float64 (numpy's, see `_log_softmax`), codes without a child in the trie and fully excluded subtrees set to -inf,
the `beam_size` best prefixes kept per query with equal scores ordered by candidate position (beam,
then code). What changes is where the work happens: the search's sorting and masking run in torch
on the model's device, and the decoder is run incrementally (`IncrementalDecoder`): each level
feeds only the newest token of every beam, with the self-attention keys and values of the earlier
tokens cached (and reordered as beams are), and the cross-attention keys and values of the
encoder's memory computed once per query and shared by all its beams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from bundleformat.beam_search import PrefixTrie, exclusion_pairs
from bundleformat.beam_search import _log_softmax as _numpy_log_softmax


class Decoder(Protocol):
    """What the search needs of a model: the first level's logits, then one level at a time."""

    def start(self) -> torch.Tensor:
        """Logits (Q, level_sizes[0]) after BOS, one row per query."""

    def advance(self, parents: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Logits (Q * W, level_sizes[level]) after appending `codes` (Q * W,) of level-1 to the beams
        `parents` (Q * W,) (row indices into the previous call's rows)."""


class DeviceTrie:
    """A `PrefixTrie`'s child tables and leaf items as tensors on one device."""

    def __init__(self, trie: PrefixTrie, device: torch.device | str):
        self.trie = trie
        self.child = [torch.as_tensor(c, device=device) for c in trie.child]
        self.leaf_item = torch.as_tensor(trie.leaf_item, device=device)
        self.device = torch.device(device)


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    # The numpy search's own log-softmax (on float32 logits, in float64): torch's exp and log may differ from
    # numpy's in the last bit, which would reorder sums that tie in one and not the other. Only this
    # (Q * W, level size) block goes to the host and back per level; sorting and masking stay on the device.
    host = _numpy_log_softmax(logits.float().cpu().numpy())
    return torch.as_tensor(host, device=logits.device)


def batched_beam_search(decoder: Decoder, n_queries: int, trie: DeviceTrie, beam_size: int, k: int | None = None,
                        exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per query, as `bundleformat.beam_search.beam_search` returns them."""
    k = beam_size if k is None else int(k)
    if beam_size < 1 or not 1 <= k <= beam_size:
        raise ValueError(f"need 1 <= k <= beam_size, got k={k}, beam_size={beam_size}")
    device, sizes = trie.device, trie.trie.level_sizes
    # Per depth, a flat table over (query, node): True where every item below the node is excluded for the query.
    blocked = []
    for depth, keys in enumerate(trie.trie.blocked(*exclusion_pairs(exclude))):
        table = torch.zeros(n_queries * trie.trie.n_nodes(depth) if len(keys) else 0, dtype=torch.bool, device=device)
        table[torch.as_tensor(keys, device=device)] = True
        blocked.append(table)
    query = torch.arange(n_queries, device=device)
    width = 1
    nodes = torch.zeros((n_queries, 1), dtype=torch.int64, device=device)
    scores = torch.zeros((n_queries, 1), dtype=torch.float64, device=device)
    logits = decoder.start()
    for d in range(trie.trie.depth):
        size = sizes[d]
        if logits.shape != (n_queries * width, size):
            raise ValueError(f"decoder returned shape {tuple(logits.shape)}, expected {(n_queries * width, size)}")
        live = torch.isfinite(scores)
        logp = _log_softmax(logits).reshape(n_queries, width, size)
        children = trie.child[d][torch.where(live, nodes, 0)]  # (Q, W, size)
        valid = (children >= 0) & live[:, :, None]
        if len(blocked[d + 1]):
            keys = query[:, None, None] * trie.trie.n_nodes(d + 1) + children.clamp_min(0)
            valid &= ~blocked[d + 1][keys]
        candidates = torch.where(valid, scores[:, :, None] + logp, -torch.inf).reshape(n_queries, width * size)
        keep = min(beam_size, width * size)
        # Ascending sort of the negated scores, stable: the numpy search's np.argsort(-x, kind="stable").
        order = torch.sort(-candidates, dim=1, stable=True).indices[:, :keep]
        beam, code = order // size, order % size
        scores = torch.gather(candidates, 1, order)
        nodes = torch.gather(children.reshape(n_queries, width * size), 1, order)
        if d + 1 < trie.trie.depth:
            parents = (query[:, None] * width + beam).reshape(-1)
            logits = decoder.advance(parents, code.reshape(-1), d + 1)
        width = keep
    items = torch.where(torch.isfinite(scores), trie.leaf_item[nodes.clamp_min(0)], -1)
    items, scores = items.cpu().numpy(), scores.cpu().numpy()
    if width < k:
        items = np.pad(items, ((0, 0), (0, k - width)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, k - width)), constant_values=-np.inf)
    return items[:, :k], scores[:, :k]


class IncrementalDecoder:
    """A `torch.nn.TransformerDecoder` (pre-norm layers, as `GenerativeRetriever` builds it) fed one token per
    beam per call, in eval mode.

    embed(tokens, position) -> token embeddings at a position (BOS = 0); head: the output layer applied to the
    final norm's output; level_rows[level]: the head rows of that level's codes.

    Per level and layer the work is a few matrix products over the N = Q * W newest tokens: one packed
    query/key/value projection (as `nn.MultiheadAttention` does it), attention over the cached keys and
    values of the beam's earlier tokens, the query's cross-attention (memory keys and values projected
    once per query, shared by its beams) and the feed-forward. The cache is one preallocated
    (N, heads, depth, head_dim) buffer per layer for keys and one for values, gathered by parent once per level.
    """

    def __init__(self, stack: torch.nn.TransformerDecoder, embed, head: torch.nn.Linear, memory: torch.Tensor,
                 padding: torch.Tensor, bos_tokens: torch.Tensor, level_rows: Sequence[slice]):
        self.layers = list(stack.layers)
        self.final_norm = stack.norm
        self.embed, self.head, self.level_rows = embed, head, list(level_rows)
        first = self.layers[0]
        self.n_heads = first.self_attn.num_heads
        self.d_model = first.self_attn.embed_dim
        self.head_dim = self.d_model // self.n_heads
        self.depth = len(self.level_rows)
        self.queries = len(memory)
        with torch.no_grad():
            # Cross-attention keys and values of every query's memory, once: (Q, heads, S, head_dim) per layer.
            self.memory_kv = []
            for layer in self.layers:
                ca, d = layer.multihead_attn, self.d_model
                bias = ca.in_proj_bias[d:] if ca.in_proj_bias is not None else None
                kv = torch.nn.functional.linear(memory, ca.in_proj_weight[d:], bias)  # (Q, S, 2d)
                kv = kv.unflatten(-1, (2, self.n_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
                self.memory_kv.append((kv[0], kv[1]))
        # (Q, 1, 1, S): True where a query may attend; None when no query has padding (no mask is faster).
        self.attend = None if not bool(padding.any()) else (~padding)[:, None, None, :]
        self.cache: list[torch.Tensor] = []  # per layer (2, N, heads, depth, head_dim): keys, values
        self.rows_per_query = 1
        self.bos = bos_tokens

    def _heads(self, y: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, heads, head_dim)."""
        return y.view(len(y), self.n_heads, self.head_dim)

    def _layer(self, index: int, x: torch.Tensor, level: int) -> torch.Tensor:
        """x: (N, d), the newest token of N = Q * W beams, at position `level`."""
        layer = self.layers[index]
        sa, n = layer.self_attn, len(x)
        qkv = torch.nn.functional.linear(layer.norm1(x), sa.in_proj_weight, sa.in_proj_bias)  # (N, 3d)
        q, k, v = qkv.view(n, 3, self.n_heads, self.head_dim).unbind(1)
        cache = self.cache[index]
        cache[0, :, :, level] = k
        cache[1, :, :, level] = v
        keys, values = cache[0, :, :, :level + 1], cache[1, :, :, :level + 1]  # (N, heads, t, head_dim)
        # The newest token attends to every earlier one (and itself): softmax over t <= depth scores.
        # Elementwise products, not batched matrix products: N * heads products of one row by t are too small.
        weights = torch.softmax((q[:, :, None, :] * keys).sum(-1) * self.head_dim ** -0.5, dim=-1)  # (N, heads, t)
        h = (weights[..., None] * values).sum(2).reshape(n, self.d_model)
        x = x + sa.out_proj(h)
        ca = layer.multihead_attn
        d, width = self.d_model, self.rows_per_query
        bias = ca.in_proj_bias[:d] if ca.in_proj_bias is not None else None
        q = torch.nn.functional.linear(layer.norm2(x), ca.in_proj_weight[:d], bias)
        # (N, d) -> (Q, heads, W, head_dim): a query's beams share its memory.
        q = q.view(self.queries, width, self.n_heads, self.head_dim).transpose(1, 2)
        mk, mv = self.memory_kv[index]
        h = torch.nn.functional.scaled_dot_product_attention(q, mk, mv, attn_mask=self.attend)  # (Q, heads, W, hd)
        x = x + ca.out_proj(h.transpose(1, 2).reshape(n, d))
        hidden = layer.linear1(layer.norm3(x))
        return x + layer.linear2(torch.relu_(hidden) if layer.activation is torch.nn.functional.relu
                                 else layer.activation(hidden))

    def _run(self, tokens: torch.Tensor, level: int) -> torch.Tensor:
        x = self.embed(tokens, level)
        if not level:
            shape = (2, len(tokens), self.n_heads, self.depth, self.head_dim)
            self.cache = [x.new_empty(shape) for _ in self.layers]
        for index in range(len(self.layers)):
            x = self._layer(index, x, level)
        out = self.final_norm(x)
        rows = self.level_rows[level]
        return torch.nn.functional.linear(out, self.head.weight[rows], self.head.bias[rows])

    @torch.no_grad()
    def start(self) -> torch.Tensor:
        self.rows_per_query = 1
        return self._run(self.bos, 0)

    @torch.no_grad()
    def advance(self, parents: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        # Beams inherit their parent's keys and values (positions < level); one gather per layer.
        self.cache = [cache.index_select(1, parents) for cache in self.cache]
        self.rows_per_query = len(parents) // self.queries
        return self._run(codes, level)
