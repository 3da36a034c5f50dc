"""Matrix-factorization backbone on TorchRec tables: score(u, i) = U_u . V_i.

User and item tables are TorchRec `EmbeddingBagCollection`s fed with `KeyedJaggedTensor`s of
single ids (every bag holds one id, so SUM pooling returns the row itself). Keeping them TorchRec
modules lets `DistributedModelParallel` shard them (`recsys.models.sharding.shard_collections`, then
`use_collections`); unsharded, their weights are ordinary CPU tensors, so a compiled kernel may
update them in place through `weight.detach().numpy()`. Sharded, every read goes through the
lookups (`embed_users`, `embed_items`, `all_items`), which all processes make together.
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


class PlainTable(nn.Module):
    """Where TorchRec is not installed (e.g. a GPU machine without its CUDA build): one plain embedding table
    answering the same single-id lookups, with the same state-dict names (`embedding_bags.<name>.weight`),
    so checkpoints move between the two. Sharding needs TorchRec."""

    def __init__(self, name: str, rows: int, dim: int):
        super().__init__()
        self.name = name
        self.embedding_bags = nn.ModuleDict({name: nn.EmbeddingBag(rows, dim, mode="sum")})

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.embedding_bags[self.name].weight[ids]}


try:
    _torchrec = _import_torchrec()
except ImportError:  # a plain-torch machine: the tables are `PlainTable`s
    _torchrec = None
    EmbeddingBagCollection = PlainTable
else:
    EmbeddingBagCollection, EmbeddingBagConfig = _torchrec.EmbeddingBagCollection, _torchrec.EmbeddingBagConfig
    KeyedJaggedTensor, PoolingType = _torchrec.KeyedJaggedTensor, _torchrec.PoolingType


def single_id_features(name: str, ids: torch.Tensor):
    """A one-feature KeyedJaggedTensor where each bag holds exactly one id (the ids themselves without TorchRec)."""
    ids = ids.reshape(-1).to(torch.int64)
    if _torchrec is None:
        return ids
    return KeyedJaggedTensor.from_lengths_sync(
        keys=[name], values=ids, lengths=torch.ones(len(ids), dtype=torch.int32, device=ids.device))


def _table(name: str, rows: int, dim: int) -> nn.Module:
    if _torchrec is None:
        return PlainTable(name, rows, dim)
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

    # sharding -------------------------------------------------------------------------------
    @property
    def sharded(self) -> bool:
        """Whether the tables are split across processes (`DistributedModelParallel`)."""
        return not isinstance(self.users, EmbeddingBagCollection)

    def collections(self) -> list[nn.Module]:
        return [self.users, self.items]

    def use_collections(self, users: nn.Module, items: nn.Module) -> None:
        """Swap in (sharded) modules that answer the same lookups as the tables they replace."""
        self.users, self.items = users, items

    # the raw tables ------------------------------------------------------------------------
    @property
    def user_weight(self) -> torch.Tensor:
        """The (n_users, dim) parameter inside the TorchRec table (shares memory with it)."""
        return self._weight(self.users, self.user_feature)

    @property
    def item_weight(self) -> torch.Tensor:
        return self._weight(self.items, self.item_feature)

    def _weight(self, collection: nn.Module, feature: str) -> torch.Tensor:
        if self.sharded:
            raise RuntimeError(f"the '{feature}' table is sharded across processes: read it through lookups "
                               "(embed_users / embed_items), which every process must call together")
        return collection.embedding_bags[feature].weight

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

    def all_items(self) -> torch.Tensor:
        """The (n_items, dim) item table: read directly, or looked up when sharded (collective)."""
        if self.sharded:
            return self.embed_items(torch.arange(self.n_items))
        return self.item_weight

    def all_users(self) -> torch.Tensor:
        if self.sharded:
            return self.embed_users(torch.arange(self.n_users))
        return self.user_weight

    def score_all(self, users: torch.Tensor, item_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the given users against every item: (len(users), n_items).

        `item_rows`: the item table when the caller already holds it (sharded tables are looked up
        once per evaluation, not once per batch of users).
        """
        items = self.all_items() if item_rows is None else item_rows
        return self.embed_users(users) @ items.T
