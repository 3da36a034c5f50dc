"""SASRec (Kang & McAuley, *Self-Attentive Sequential Recommendation*, ICDM 2018).

The user's last `max_length` items (item embeddings, scaled by sqrt(d), plus learned position
embeddings) pass through `n_blocks` causal self-attention blocks laid out as the authors' code
lays them out: the query is the layer-normed input, the residual adds to it, then a layer norm
and a point-wise two-layer feed-forward network with its own residual; padded positions are
zeroed after every block; a final layer norm. The output at position t scores every item i by
its dot product with item i's input embedding (the table is shared).

Loss (`loss`):
- "ce" (default): cross-entropy of the next item over all items at every position. Chosen
  because it is consistently stronger than the paper's sampled loss (Klenitskiy & Vasilev,
  RecSys 2023, *Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?*) and, on
  catalogs of ~10^4 items, costs little more; docs/benchmarks.md reports both.
- "bce": the paper's binary cross-entropy with one uniformly sampled negative per position.

Trained by `python -m recsys fit -c configs/recsys/sasrec.yaml` on any data with timestamps: the
DataModule hands out each user's time-ordered training items as windows (`training_batches =
"sequences"`), and evaluation is the project's full-ranking evaluator, with the history being the
training items for validation and the training and validation items for test.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import UserInputError
from recsys.models.base import RecommenderModule


class _Block(nn.Module):
    """One SASRec block (the authors' layout: Q = LN(x); x = Q + attn(Q, x, x); x = LN(x); x = x + FFN(x))."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attention = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, blocked: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        query = self.attention_norm(x)
        attended, _ = self.attention(query, x, x, attn_mask=blocked, need_weights=False)
        x = self.ffn_norm(query + attended)
        x = x + self.ffn(x)
        return x * keep


class SASRec(RecommenderModule):
    """Causal self-attention over the user's recent items; scores are dot products with the item table."""

    model_kind = "sasrec"
    training_batches = "sequences"

    def __init__(self, n_users: int = 1, n_items: int = 1, max_length: int = 50, embedding_dim: int = 64,
                 n_blocks: int = 2, n_heads: int = 1, dropout: float = 0.5, loss: Literal["ce", "bce"] = "ce",
                 lr: float = 1e-3, weight_decay: float = 0.0, eval_ks: list[int] = (5, 10, 20),
                 predict_k: int = 20, monitor: str | None = "valid/ndcg@10"):
        super().__init__(eval_ks=eval_ks, predict_k=predict_k, monitor=monitor)
        if min(n_items, max_length, embedding_dim, n_blocks, n_heads) < 1:
            raise UserInputError("model: n_items, max_length, embedding_dim, n_blocks and n_heads must be >= 1")
        if embedding_dim % n_heads:
            raise UserInputError(f"model.embedding_dim ({embedding_dim}) must be a multiple of n_heads ({n_heads})")
        if loss not in ("ce", "bce"):
            raise UserInputError(f"model.loss must be 'ce' or 'bce', got {loss!r}")
        if not 0 <= dropout < 1 or lr <= 0 or weight_decay < 0:
            raise UserInputError("model: dropout must be in [0, 1), lr > 0 and weight_decay >= 0")
        self.save_hyperparameters()
        self.max_length = int(max_length)
        self.items = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)  # token i + 1 is item i
        self.positions = nn.Embedding(max_length, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(embedding_dim, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(embedding_dim, eps=1e-8)
        for name, parameter in self.named_parameters():  # as the authors' PyTorch code: Xavier where it applies
            if parameter.dim() > 1 and "norm" not in name:
                nn.init.xavier_normal_(parameter)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self._history: dict[str, torch.Tensor] = {}
        self._stage = "test"

    # the network ---------------------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, d) hidden states of left-padded token windows (B, L)."""
        length = tokens.shape[1]
        x = self.items(tokens) * math.sqrt(self.hparams.embedding_dim)
        x = x + self.positions.weight[self.max_length - length:][None]
        present = tokens > 0
        keep = present.unsqueeze(-1).to(x.dtype)
        x = self.dropout(x) * keep
        # Causal, and padding is never attended (so how much padding a window has changes nothing); a padding
        # position attends to itself only, and is zeroed after each block.
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        blocked = (causal[None] | ~present[:, None, :]) & ~torch.eye(length, dtype=torch.bool, device=tokens.device)
        blocked = blocked.repeat_interleave(self.hparams.n_heads, dim=0)
        for block in self.blocks:
            x = block(x, blocked, keep)
        return self.final_norm(x)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encode(batch["input"])
        target = batch["target"]
        where = target > 0
        states, positives = hidden[where], target[where]
        if self.hparams.loss == "ce":
            logits = states @ self.items.weight[1:].T
            return F.cross_entropy(logits, positives - 1)
        negatives = torch.randint(1, self.hparams.n_items + 1, positives.shape, device=positives.device)
        positive = (states * self.items(positives)).sum(-1)
        negative = (states * self.items(negatives)).sum(-1)
        return F.binary_cross_entropy_with_logits(torch.cat([positive, negative]),
                                                  torch.cat([torch.ones_like(positive), torch.zeros_like(negative)]))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["input"]))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=(0.9, 0.98),
                                weight_decay=self.hparams.weight_decay)

    # scoring for the evaluator ---------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._history = {}

    def evaluate_stage(self, stage: str):
        self._stage = stage  # validation reads the training items, test also the validation item
        return super().evaluate_stage(stage)

    def history(self, users: torch.Tensor) -> torch.Tensor:
        stage = "valid" if self._stage == "valid" else "test"  # predict reads what test reads
        if stage not in self._history:
            self._history[stage] = torch.as_tensor(self._datamodule().history_windows(stage, self.max_length))
        windows = self._history[stage][users.cpu()]
        used = (windows > 0).any(dim=0)
        first = int(used.to(torch.int8).argmax()) if bool(used.any()) else windows.shape[1] - 1
        return windows[:, first:].to(self.device)  # leading columns that are padding in every row are dropped

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                last = self.encode(self.history(users))[:, -1]
                return (last @ self.items.weight[1:].T).float().cpu()
        finally:
            self.train(was)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        self._stage = "predict"
        return super().predict_step(batch, batch_idx, dataloader_idx)

    def next_item_scores(self, histories: np.ndarray) -> np.ndarray:
        """Scores of every item after each history (rows of item ids in time order, -1 = padding)."""
        tokens = torch.as_tensor(np.where(histories >= 0, histories + 1, 0)[:, -self.max_length:], device=self.device)
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                return (self.encode(tokens)[:, -1] @ self.items.weight[1:].T).float().cpu().numpy()
        finally:
            self.train(was)
