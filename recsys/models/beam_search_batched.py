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

    tokens: the token embedding; position: embeddings added per position (BOS = 0); head: the output layer
    applied to the final norm's output; level_slice(level) -> the head rows of that level's codes.
    """

    def __init__(self, stack: torch.nn.TransformerDecoder, embed, head: torch.nn.Linear, memory: torch.Tensor,
                 padding: torch.Tensor, bos_tokens: torch.Tensor, level_rows: Sequence[slice]):
        self.layers = list(stack.layers)
        self.final_norm = stack.norm
        self.embed, self.head, self.level_rows = embed, head, list(level_rows)
        first = self.layers[0]
        self.n_heads = first.self_attn.num_heads
        self.queries = len(memory)
        # Cross-attention keys and values of every query's memory, once: (Q, heads, S, head_dim) per layer.
        self.memory_kv = [self._project(layer.multihead_attn, memory, 1) + self._project(layer.multihead_attn, memory, 2)
                          for layer in self.layers]
        self.attend = (~padding)[:, None, None, :]  # (Q, 1, 1, S): True where a query may attend
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.rows_per_query = 1
        self.bos = bos_tokens

    def _project(self, attention: torch.nn.MultiheadAttention, x: torch.Tensor, which: int) -> tuple[torch.Tensor]:
        d = attention.embed_dim
        weight = attention.in_proj_weight[which * d:(which + 1) * d]
        bias = attention.in_proj_bias[which * d:(which + 1) * d] if attention.in_proj_bias is not None else None
        y = torch.nn.functional.linear(x, weight, bias)
        return (y.unflatten(-1, (self.n_heads, d // self.n_heads)).transpose(-3, -2),)

    def _layer(self, index: int, x: torch.Tensor, level: int) -> torch.Tensor:
        """x: (N, 1, d) newest token of N = Q * W beams."""
        layer = self.layers[index]
        sa = layer.self_attn
        a = layer.norm1(x)
        q, = self._project(sa, a, 0)
        k, = self._project(sa, a, 1)
        v, = self._project(sa, a, 2)
        if level:  # earlier positions of every beam: cached keys and values (already reordered)
            past_k, past_v = self.cache[index]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self.cache[index] = (k, v)
        h = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # the newest token sees every earlier one
        x = x + sa.out_proj(h.transpose(1, 2).flatten(-2))
        ca = layer.multihead_attn
        b = layer.norm2(x)
        width = self.rows_per_query
        q, = self._project(ca, b, 0)  # (N, heads, 1, hd) -> (Q, heads, W, hd): a query's beams share its memory
        q = q.reshape(self.queries, width, *q.shape[1:]).squeeze(3).transpose(1, 2)
        mk, mv = self.memory_kv[index]
        h = torch.nn.functional.scaled_dot_product_attention(q, mk, mv, attn_mask=self.attend)  # (Q, heads, W, hd)
        h = h.transpose(1, 2).reshape(self.queries * width, 1, -1)
        x = x + ca.out_proj(h)
        c = layer.norm3(x)
        return x + layer.linear2(layer.activation(layer.linear1(c)))

    def _run(self, tokens: torch.Tensor, level: int) -> torch.Tensor:
        x = self.embed(tokens[:, None], level)
        if not level:
            self.cache = [None] * len(self.layers)
        for index in range(len(self.layers)):
            x = self._layer(index, x, level)
        out = self.final_norm(x[:, 0])
        rows = self.level_rows[level]
        return torch.nn.functional.linear(out, self.head.weight[rows], self.head.bias[rows])

    @torch.no_grad()
    def start(self) -> torch.Tensor:
        self.rows_per_query = 1
        return self._run(self.bos, 0)

    @torch.no_grad()
    def advance(self, parents: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        self.cache = [(k[parents], v[parents]) for k, v in self.cache]
        self.rows_per_query = len(parents) // self.queries
        return self._run(codes, level)
