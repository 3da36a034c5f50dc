"""Matrix-factorization backbone on TorchRec tables: score(u, i) = U_u . V_i.

User and item tables are TorchRec `EmbeddingBagCollection`s fed with `KeyedJaggedTensor`s of
single ids (every bag holds one id, so SUM pooling returns the row itself). Keeping them TorchRec
modules lets `DistributedModelParallel` shard them later; their weights are still ordinary CPU
tensors, so a compiled kernel may update them in place through `weight.detach().numpy()`.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn


def _import_torchrec():
    """Import TorchRec without the root log handler fbgemm_gpu installs at import (logging.basicConfig)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import torchrec

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    return torchrec


_torchrec = _import_torchrec()
EmbeddingBagCollection, EmbeddingBagConfig = _torchrec.EmbeddingBagCollection, _torchrec.EmbeddingBagConfig
KeyedJaggedTensor, PoolingType = _torchrec.KeyedJaggedTensor, _torchrec.PoolingType


def single_id_features(name: str, ids: torch.Tensor) -> KeyedJaggedTensor:
    """A one-feature KeyedJaggedTensor where each bag holds exactly one id."""
    ids = ids.reshape(-1).to(torch.int64)
    return KeyedJaggedTensor.from_lengths_sync(
        keys=[name], values=ids, lengths=torch.ones(len(ids), dtype=torch.int32, device=ids.device))


def _table(name: str, rows: int, dim: int) -> EmbeddingBagCollection:
    config = EmbeddingBagConfig(name=name, embedding_dim=dim, num_embeddings=rows, feature_names=[name],
                                pooling=PoolingType.SUM)
    return EmbeddingBagCollection(tables=[config], device=torch.device("cpu"))


class MatrixFactorization(nn.Module):
    """Two TorchRec tables, users (n_users x dim) and items (n_items x dim), scored by dot product.

    `prefix` names the tables (`<prefix>user`, `<prefix>item`) so two instances in one model
    (NBPO's preference and flip factorizations) have distinct table names for sharding plans.
    Initialization: N(0, init_std^2) everywhere; with `logit_offset` = c the first coordinate of
    every user row is sqrt(|c|) and of every item row sign(c) * sqrt(|c|), so every score starts at
    about c (NBPO starts its flip logits near logit(0.002)) while remaining a pure dot product.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.1,
                 prefix: str = "", logit_offset: float = 0.0):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_feature, self.item_feature = f"{prefix}user", f"{prefix}item"
        self.users = _table(self.user_feature, n_users, dim)
        self.items = _table(self.item_feature, n_items, dim)
        self.reset_parameters(init_std, logit_offset)

    @torch.no_grad()
    def reset_parameters(self, init_std: float, logit_offset: float = 0.0) -> None:
        for weight in (self.user_weight, self.item_weight):
            weight.normal_(0.0, init_std)
        if logit_offset:
            scale = math.sqrt(abs(logit_offset))
            self.user_weight[:, 0] = scale
            self.item_weight[:, 0] = math.copysign(scale, logit_offset)

    # the raw tables ------------------------------------------------------------------------
    @property
    def user_weight(self) -> torch.Tensor:
        """The (n_users, dim) parameter inside the TorchRec table (shares memory with it)."""
        return self.users.embedding_bags[self.user_feature].weight

    @property
    def item_weight(self) -> torch.Tensor:
        return self.items.embedding_bags[self.item_feature].weight

    # lookups through TorchRec ---------------------------------------------------------------
    def embed_users(self, users: torch.Tensor) -> torch.Tensor:
        """Rows of the user table for ids of any shape -> shape (*users.shape, dim)."""
        rows = self.users(single_id_features(self.user_feature, users))[self.user_feature]
        return rows.reshape(*users.shape, self.dim)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        rows = self.items(single_id_features(self.item_feature, items))[self.item_feature]
        return rows.reshape(*items.shape, self.dim)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (users[b], items[b, ...]): users (B,), items (B,) or (B, n) -> (B,) or (B, n)."""
        u = self.embed_users(users)
        v = self.embed_items(items)
        if items.dim() == users.dim():
            return (u * v).sum(-1)
        return torch.einsum("bd,bnd->bn", u, v)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of the given users against every item: (len(users), n_items)."""
        return self.embed_users(users) @ self.item_weight.T
