"""Generative retrieval: an encoder-decoder transformer writes the semantic ID of the next item.

Two variants share the decoder and differ in what the encoder reads:

- `tiger` (Rajput et al., 2023): the history as semantic-ID tokens, each item's codes in a row,
  with embeddings of the item's recency and of the code level;
- `mender` (Paischer et al., 2024, MenderEmb-style): one encoder token per preference sentence
  (its sentence embedding, projected), and the history as in tiger with each item's text
  embedding (projected) added to its tokens. Both variants thus read the same history tokens;
  Mender adds what the text says about the items and what the user says about themselves.
  (A first version gave Mender one token per item, text plus summed code embeddings: its
  history pathway alone reached recall@10 0.189 where TIGER's reached 0.236 on the world.)
  With `preference_polarity`, each preference token also gets a learned embedding of its polarity
  (like / dislike, from the extractor's phrasing): the sentence encoder puts "Avoid X" next to
  "Find X", and the polarity embedding is what keeps them apart.

Both encoders start with one learned context token, so a query with neither history nor
preferences still has something to attend to. The decoder reads BOS and the codes so far and
predicts the next level's code; the loss is the cross-entropy of each level's code over that
level's vocabulary. Generation is `bundleformat.beam_search.beam_search` constrained by the
trie of valid IDs, optionally excluding items (the history). Token ids: 0 = padding, 1 = BOS,
then level l's codes at `offsets[l]`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from bundleformat.beam_search import PrefixTrie, beam_search
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

Variant = Literal["tiger", "mender"]
PAD, BOS = 0, 1
# `recommend`'s queries per batch when none is given (see its doc).
CPU_BATCH_SIZE, ACCELERATOR_BATCH_SIZE = 64, 4096


class GenerativeRetriever(pl.LightningModule):
    """Seq2seq next-item generator over semantic IDs (see the module doc).

    Batches are dicts: `history` (B, H) item ids, -1 padded on the left (most recent last);
    `target` (B,) item ids; for mender also `prefs` (B, P, text_dim) and `pref_mask` (B, P) bool.
    Item data (semantic IDs, item text embeddings) are buffers set with `set_items`, so a
    checkpoint carries them.
    """

    def __init__(self, variant: Variant = "tiger", n_items: int = 1, level_sizes: Sequence[int] = (256, 256, 256, 1),
                 text_dim: int = 384, d_model: int = 128, n_heads: int = 4, encoder_layers: int = 2,
                 decoder_layers: int = 2, ff_dim: int = 512, dropout: float = 0.1, max_history: int = 20,
                 max_preferences: int = 5, lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 100,
                 label_smoothing: float = 0.0, beam_size: int = 20, preference_polarity: bool = False):
        super().__init__()
        if variant not in ("tiger", "mender"):
            raise UserInputError(f"model.variant must be 'tiger' or 'mender', got {variant!r}")
        if d_model % n_heads:
            raise UserInputError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        if min(n_items, d_model, n_heads, encoder_layers, decoder_layers, ff_dim, max_history, beam_size) < 1:
            raise UserInputError("n_items, d_model, n_heads, layers, ff_dim, max_history and beam_size must be >= 1")
        if not 0 <= dropout < 1 or lr <= 0 or weight_decay < 0 or warmup_steps < 0:
            raise UserInputError("dropout must be in [0, 1), lr > 0, weight_decay and warmup_steps >= 0")
        self.save_hyperparameters()
        self.variant = variant
        self.level_sizes = tuple(int(s) for s in level_sizes)
        self.n_levels = len(self.level_sizes)
        offsets = np.concatenate([[2], 2 + np.cumsum(self.level_sizes)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.as_tensor(offsets), persistent=False)
        self.vocab_size = int(2 + sum(self.level_sizes))

        # Row n_items is the padding item: PAD tokens and a zero text vector.
        self.register_buffer("item_codes", torch.zeros(n_items + 1, self.n_levels, dtype=torch.int64))
        self.register_buffer("item_text", torch.zeros(n_items + 1, text_dim if variant == "mender" else 0))

        self.tokens = nn.Embedding(self.vocab_size, d_model, padding_idx=PAD)
        self.context_token = nn.Parameter(torch.randn(d_model) * 0.02)
        self.recency = nn.Embedding(max_history, d_model)
        self.level = nn.Embedding(self.n_levels, d_model)
        if variant == "mender":
            self.item_projection = nn.Linear(text_dim, d_model)
            self.preference_projection = nn.Linear(text_dim, d_model)
            self.segment = nn.Embedding(2, d_model)  # 0 = preference, 1 = history item
            if preference_polarity:
                self.polarity = nn.Embedding(2, d_model)  # 0 = like, 1 = dislike
        layer = dict(d_model=d_model, nhead=n_heads, dim_feedforward=ff_dim, dropout=dropout, batch_first=True,
                     norm_first=True)
        self.encoder_stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), encoder_layers,
                                                   norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.decoder_stack = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), decoder_layers,
                                                   norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, self.vocab_size)
        self._trie: PrefixTrie | None = None
        self.prefengine_meta: dict[str, Any] = {}  # vocabulary, catalog, text encoder... (for export)

    @property
    def model_kind(self) -> str:
        return f"generative-{self.variant}"

    # -- item data --------------------------------------------------------------------------------
    @torch.no_grad()
    def set_items(self, codes: np.ndarray, text_embeddings: np.ndarray | None = None) -> None:
        """Semantic IDs (n_items, n_levels) and, for mender, the items' text embeddings (n_items, text_dim)."""
        codes = np.asarray(codes, dtype=np.int64)
        n_items = self.hparams.n_items
        if codes.shape != (n_items, self.n_levels):
            raise UserInputError(f"semantic IDs have shape {codes.shape}, the model expects ({n_items}, {self.n_levels})")
        if (codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any():
            raise UserInputError(f"semantic ID codes exceed the model's level sizes {self.level_sizes}")
        self.item_codes[:n_items] = torch.as_tensor(codes)
        self.item_codes[n_items] = 0
        if self.variant == "mender":
            if text_embeddings is None or np.shape(text_embeddings) != (n_items, self.hparams.text_dim):
                raise UserInputError(f"mender needs item text embeddings of shape ({n_items}, {self.hparams.text_dim})")
            self.item_text[:n_items] = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
            self.item_text[n_items] = 0
        self._trie = None

    @property
    def trie(self) -> PrefixTrie:
        if self._trie is None:
            self._trie = PrefixTrie(self.item_codes[:-1].cpu().numpy(), self.level_sizes)
        return self._trie

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["prefengine"] = {**self.prefengine_meta, "model_kind": self.model_kind,
                                    "model_class": f"{type(self).__module__}.{type(self).__qualname__}"}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.prefengine_meta = dict(checkpoint.get("prefengine", {}))
        self._trie = None

    # -- encoder ------------------------------------------------------------------------------------
    def _history(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(item ids with padding mapped to the pad row, valid mask, recency index 0 = most recent)."""
        history = history[:, -self.hparams.max_history:]
        valid = history >= 0
        items = torch.where(valid, history, torch.full_like(history, self.hparams.n_items))
        length = history.shape[1]
        recency = (length - 1 - torch.arange(length, device=history.device)).expand_as(history)
        return items, valid, recency

    @property
    def reads_polarity(self) -> bool:
        return self.variant == "mender" and bool(self.hparams.get("preference_polarity", False))

    def encode(self, history: torch.Tensor, prefs: torch.Tensor | None = None,
               pref_mask: torch.Tensor | None = None,
               pref_negative: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder memory (B, S, d) and its padding mask (B, S; True = padding).

        pref_negative (B, P) bool: which preferences are dislikes (read only with `preference_polarity`;
        None = all likes)."""
        items, valid, recency = self._history(history)
        batch = items.shape[0]
        codes = self.item_codes[items]  # (B, H, L)
        code_tokens = self.tokens(torch.where(valid[..., None], codes + self.offsets, torch.zeros_like(codes)))
        parts, masks = [self.context_token.expand(batch, 1, -1)], [valid.new_zeros(batch, 1)]
        x = code_tokens + self.recency(recency)[:, :, None, :] + self.level.weight[None, None, :, :]
        if self.variant == "mender":
            if prefs is not None and prefs.shape[1]:
                if pref_mask is None:
                    pref_mask = torch.ones(prefs.shape[:2], dtype=torch.bool, device=prefs.device)
                tokens = self.preference_projection(prefs) + self.segment.weight[0]
                if self.reads_polarity:
                    if pref_negative is None:
                        pref_negative = torch.zeros(prefs.shape[:2], dtype=torch.bool, device=prefs.device)
                    tokens = tokens + self.polarity(pref_negative.long())
                parts.append(tokens)
                masks.append(~pref_mask)
            item = self.item_projection(self.item_text[items]) + self.segment.weight[1]  # (B, H, d)
            x = x + item[:, :, None, :]
        parts.append(x.reshape(batch, -1, x.shape[-1]))
        masks.append((~valid)[:, :, None].expand(-1, -1, self.n_levels).reshape(batch, -1))
        source, padding = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
        memory = self.encoder_stack(source, src_key_padding_mask=padding)
        return memory, padding

    # -- decoder ------------------------------------------------------------------------------------
    def decode(self, memory: torch.Tensor, padding: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Logits (B, t + 1, vocab) after BOS and the first t codes (B, t) of the ID."""
        t = codes.shape[1]
        bos = torch.full((memory.shape[0], 1), BOS, dtype=torch.int64, device=memory.device)
        return self.decode_tokens(memory, padding, torch.cat([bos, codes + self.offsets[:t]], dim=1))

    def decode_tokens(self, memory: torch.Tensor, padding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for decoder tokens (B, T): BOS, then codes as token ids (level offsets added)."""
        length = tokens.shape[1]
        x = self.tokens(tokens) + self.level.weight[:length]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=memory.device), diagonal=1)
        # tgt_is_causal given: the layer would otherwise inspect the mask's values, which ONNX export cannot trace.
        out = self.decoder_stack(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding)
        return self.head(out)

    def level_logits(self, logits: torch.Tensor, level: int) -> torch.Tensor:
        start = int(self.offsets[level])
        return logits[..., start:start + self.level_sizes[level]]

    # -- training -----------------------------------------------------------------------------------
    def _encode_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(batch["history"], batch.get("prefs"), batch.get("pref_mask"), batch.get("pref_negative"))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        memory, padding = self._encode_batch(batch)
        target = self.item_codes[batch["target"]]  # (B, L)
        logits = self.decode(memory, padding, target[:, :-1])  # (B, L, V)
        losses = [F.cross_entropy(self.level_logits(logits[:, level], level), target[:, level],
                                  label_smoothing=self.hparams.label_smoothing) for level in range(self.n_levels)]
        return torch.stack(losses).mean()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["target"]),
                 sync_dist=True)  # on N processes: the mean over every rank's batches
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("valid/loss", self.loss(batch), prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=len(batch["target"]), sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warmup = self.hparams.warmup_steps

        def schedule(step: int) -> float:  # linear warmup, then inverse square root decay
            step += 1
            return step / warmup if warmup and step < warmup else math.sqrt(max(warmup, 1) / step)

        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), "interval": "step"}}

    # -- generation ---------------------------------------------------------------------------------
    def _step_function(self, memory: torch.Tensor, padding: torch.Tensor):
        """The beam search's view of the decoder: (query rows, codes so far) -> next level's logits."""
        def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
            r = torch.as_tensor(rows, device=self.device)
            logits = self.decode(memory[r], padding[r], torch.as_tensor(prefix, device=self.device))
            return self.level_logits(logits[:, -1], prefix.shape[1]).float().cpu().numpy()

        return step

    def incremental_decoder(self, memory: torch.Tensor, padding: torch.Tensor):
        """The decoder fed one token per beam per level, for `batched_beam_search`."""
        from recsys.models.beam_search_batched import IncrementalDecoder

        def embed(tokens: torch.Tensor, position: int) -> torch.Tensor:
            ids = tokens if position == 0 else tokens + self.offsets[position - 1]
            return self.tokens(ids) + self.level.weight[position]

        rows = [slice(int(self.offsets[level]), int(self.offsets[level]) + size)
                for level, size in enumerate(self.level_sizes)]
        bos = torch.full((len(memory),), BOS, dtype=torch.int64, device=memory.device)
        return IncrementalDecoder(self.decoder_stack, embed, self.head, memory, padding, bos, rows)

    @property
    def device_trie(self):
        from recsys.models.beam_search_batched import DeviceTrie

        cached = getattr(self, "_device_trie", None)
        if cached is None or cached.trie is not self.trie or cached.device != self.device:
            cached = self._device_trie = DeviceTrie(self.trie, self.device)
        return cached

    @torch.no_grad()
    def recommend(self, history: np.ndarray, prefs: np.ndarray | None = None, pref_mask: np.ndarray | None = None,
                  k: int = 10, beam_size: int | None = None, exclude: Sequence[Sequence[int]] | None = None,
                  batch_size: int | None = None, search: Literal["batched", "per-query"] = "batched",
                  pref_negative: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per query by constrained beam search: (items (B, k), -1 where fewer; log-probs).

        history (B, H) item ids padded with -1 on the left; prefs (B, P, text_dim) with pref_mask
        (B, P) for mender (ignored by tiger), and pref_negative (B, P) for a polarity-aware one;
        exclude: per query, items never to return.
        search: "batched" (`recsys.models.beam_search_batched`: on the model's device, decoder run
        incrementally, queries grouped by history length) or "per-query" (the numpy search over full
        decoder passes that the ONNX bundle also runs); both return the same lists.
        batch_size: queries per batch; None picks 64 on the CPU (a batch's beams then fit the caches, which
        matters more than wider matrix products) and 4096 on an accelerator. On the CPU with torch running
        more than one thread, the batched search runs that many batches at once, one thread each (each
        batch's result does not depend on the others, so the lists are the same), which keeps every core
        busy where one batch's small matrix products split across cores would wait on each other.
        """
        from recsys.models.beam_search_batched import batched_beam_search

        if search not in ("batched", "per-query"):
            raise UserInputError(f"search must be 'batched' or 'per-query', got {search!r}")
        beam_size = beam_size or self.hparams.beam_size
        on_cpu = self.device.type == "cpu"
        batch_size = batch_size or (CPU_BATCH_SIZE if on_cpu else ACCELERATOR_BATCH_SIZE)
        history = np.asarray(history, dtype=np.int64)[:, -self.hparams.max_history:]
        # Queries with similar history lengths share a batch, so little of it is padding.
        order = np.argsort((history >= 0).sum(axis=1), kind="stable") if search == "batched" else \
            np.arange(len(history))
        was = self.training
        self.eval()
        items = np.full((len(history), k), -1, dtype=np.int64)
        scores = np.full((len(history), k), -np.inf)

        def run(start: int) -> None:
            rows = order[start:start + batch_size]
            chunk = history[rows]
            if search == "batched":  # columns no query of this batch uses (left padding) are dropped
                used = (chunk >= 0).any(axis=0)
                chunk = chunk[:, int(np.argmax(used)) if used.any() else chunk.shape[1] - 1:]
            h = torch.as_tensor(chunk, device=self.device)
            p = m = n = None
            if self.variant == "mender" and prefs is not None:
                p = torch.as_tensor(np.asarray(prefs[rows], dtype=np.float32), device=self.device)
                m = torch.as_tensor(np.asarray(pref_mask[rows], dtype=bool), device=self.device) \
                    if pref_mask is not None else None
                n = torch.as_tensor(np.asarray(pref_negative[rows], dtype=bool), device=self.device) \
                    if pref_negative is not None else None
            with torch.no_grad():  # thread-local: the worker threads need their own
                memory, padding = self.encode(h, p, m, n)
                chunk_exclude = None if exclude is None else [exclude[r] for r in rows]
                if search == "batched":
                    i, s = batched_beam_search(self.incremental_decoder(memory, padding), len(h), trie, beam_size, k,
                                               chunk_exclude)
                else:
                    i, s = beam_search(self._step_function(memory, padding), len(h), self.trie, beam_size, k,
                                       chunk_exclude)
            items[rows], scores[rows] = i, s

        starts = range(0, len(history), batch_size)
        threads = torch.get_num_threads()
        workers = min(threads, len(starts)) if on_cpu and search == "batched" else 1
        trie = self.device_trie if search == "batched" else None  # built once, before any worker reads it
        try:
            if workers > 1:
                from concurrent.futures import ThreadPoolExecutor

                torch.set_num_threads(1)  # read by each worker thread at its first parallel operation
                try:
                    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                        list(pool.map(run, starts))
                finally:
                    torch.set_num_threads(threads)
            else:
                for start in starts:
                    run(start)
        finally:
            self.train(was)
        return items, scores
