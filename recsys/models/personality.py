"""Personality-aware ranking (after Roffo & Vinciarelli, 2016): Big-Five traits as features.

A DeepFM-style ranker over fields (`recsys.models.personality_features` says how they are made):

    user side  user id | one field per demographic column | multi-hot tastes (mean) | 5 traits (dense)
    item side  item id | item category

Every sparse field is a TorchRec `EmbeddingBagCollection` table fed with a `KeyedJaggedTensor`; each
table row holds an embedding e (k numbers) and, in its last column, the field's first-order weight.
A trait j is a dense field: its embedding is x_j * v_j (x_j the standardized score). Then

    wide(u, i) = sum_f w_f + sum_{f<g} <e_f, e_g>            (factorization machine, all fields)
    h(u, i)    = MLP(concat of all field embeddings)          (the deep part, sharing the embeddings)
    click logit = b_c + a_c * wide + o_c . h,   rating = b_r + a_r * wide + o_r . h

trained on click (binary cross-entropy) and rating (squared error, rows with a rating only).
Ranking uses the click logit (`rank_by="click"`) or the predicted rating (`rank_by="rating"`).

Both parts split into a user-side and an item-side half (the FM sum over pairs, and the first
MLP layer, are sums of a user term, an item term and a cross term), so scoring B users against
all N items computes each user and item once and only the cross terms per pair.

Cold start: a user without training rows has no user-id embedding (an empty bag: zero vector and
zero weight) and is scored from demographics, tastes and traits alone; the same holds for
items without training rows. During training the user id is dropped with probability
`user_dropout`, so the other fields learn to stand in for it. `score_profiles` scores users who
are not in the vocabulary at all, from a raw profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from recsys.data.interactions import BIG_FIVE
from recsys.errors import UserInputError
from recsys.models.base import RecommenderModule
from recsys.models.personality_features import FeatureSpace
from recsys.models.sharding import Sharding, check_sharding, is_sharded

RankBy = Literal["click", "rating"]
N_TRAITS = len(BIG_FIVE)
# Exact score rows in a bundle cost n_users x n_items floats plus an n_items-square identity.
MAX_EXACT_ITEMS = 4096


def fm_interaction(embeddings: torch.Tensor) -> torch.Tensor:
    """Sum over field pairs f < g of <e_f, e_g>: (..., F, k) -> (...), as 0.5 * (|sum e|^2 - sum |e|^2)."""
    total = embeddings.sum(dim=-2)
    return 0.5 * (total.square().sum(-1) - embeddings.square().sum(dim=(-2, -1)))


def _config(name: str, rows: int, dim: int, pooling: PoolingType = PoolingType.SUM) -> EmbeddingBagConfig:
    return EmbeddingBagConfig(name=name, embedding_dim=dim, num_embeddings=max(1, rows), feature_names=[name],
                              pooling=pooling)


def bags(ids: dict[str, torch.Tensor]) -> KeyedJaggedTensor:
    """A KeyedJaggedTensor from padded id matrices (B, L) per feature; id 0 (unknown, padding) is left out."""
    keys, values, lengths = [], [], []
    for name, matrix in ids.items():
        matrix = matrix.reshape(len(matrix), -1)
        present = matrix > 0
        keys.append(name)
        values.append(matrix[present])
        lengths.append(present.sum(dim=1).to(torch.int32))
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths))


@dataclass
class Side:
    """One side (users or items) of a batch: field embeddings, first-order sum, own FM pairs, MLP projection."""

    embeddings: torch.Tensor  # (B, F, k)
    linear: torch.Tensor  # (B,)
    projection: torch.Tensor  # (B, h1): this side's share of the first MLP layer

    @property
    def total(self) -> torch.Tensor:
        return self.embeddings.sum(dim=1)

    @property
    def own_pairs(self) -> torch.Tensor:
        return fm_interaction(self.embeddings)


class PersonalityNet(nn.Module):
    """The network: TorchRec tables for the sparse fields, trait vectors, the MLP and two heads.

    Table ids are 1-based (row 0 is never looked up: id 0 means unknown and is left out of the bag).
    `field_sizes`: table rows of each demographic field; `n_tastes` 0 or 1 means no taste field.
    """

    def __init__(self, n_users: int, n_items: int, n_categories: int, field_sizes: list[int], n_tastes: int,
                 embedding_dim: int = 16, hidden: list[int] = (64, 32), dropout: float = 0.1,
                 use_traits: bool = True, init_std: float = 0.05):
        super().__init__()
        k = embedding_dim
        self.embedding_dim, self.use_traits = k, use_traits
        self.demographic_features = [f"demo_{j}" for j in range(len(field_sizes))]
        self.use_tastes = n_tastes > 1
        # Row u + 1 is user u (row 0 unused), as for every other field.
        user_tables = [_config("user", n_users + 1, k + 1)]
        user_tables += [_config(name, size, k + 1) for name, size in zip(self.demographic_features, field_sizes)]
        if self.use_tastes:
            user_tables.append(_config("tastes", n_tastes, k + 1, PoolingType.MEAN))
        self.user_tables = EmbeddingBagCollection(tables=user_tables, device=torch.device("cpu"))
        self.item_tables = EmbeddingBagCollection(
            tables=[_config("item", n_items + 1, k + 1), _config("category", n_categories, k + 1)],
            device=torch.device("cpu"))
        self.user_features = [t.name for t in user_tables]
        self.item_features = ["item", "category"]
        self.trait_vectors = nn.Parameter(torch.empty(N_TRAITS, k + 1)) if use_traits else None
        n_user_fields = len(self.user_features) + (N_TRAITS if use_traits else 0)
        n_item_fields = len(self.item_features)
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise UserInputError(f"model.hidden must list positive layer widths, got {hidden}")
        self.user_projection = nn.Linear(n_user_fields * k, hidden[0])
        self.item_projection = nn.Linear(n_item_fields * k, hidden[0], bias=False)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(hidden[:-1], hidden[1:]):
            layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(width_in, width_out)]
        self.mlp = nn.Sequential(*layers, nn.ReLU(), nn.Dropout(dropout))
        self.heads = nn.Linear(hidden[-1], 2)  # column 0: click, column 1: rating
        self.head_bias = nn.Parameter(torch.zeros(2))
        self.wide_scale = nn.Parameter(torch.ones(2))
        self.reset_parameters(init_std)

    @torch.no_grad()
    def reset_parameters(self, init_std: float) -> None:
        for collection in (self.user_tables, self.item_tables):
            for table in collection.embedding_bags.values():
                table.weight.normal_(0.0, init_std)
        if self.trait_vectors is not None:
            self.trait_vectors.normal_(0.0, init_std)

    # the two sides ------------------------------------------------------------------------------
    def user_side(self, users: torch.Tensor, keep_user: torch.Tensor, demographics: torch.Tensor,
                  tastes: torch.Tensor, traits: torch.Tensor) -> Side:
        """users (B,), keep_user (B,) bool (False: no user-id embedding), demographics (B, F) ids,
        tastes (B, L) ids (0 = padding), traits (B, 5) standardized (0 = unknown)."""
        ids = {"user": torch.where(keep_user, users + 1, torch.zeros_like(users))}
        for j, name in enumerate(self.demographic_features):
            ids[name] = demographics[:, j]
        if self.use_tastes:
            ids["tastes"] = tastes
        pooled = self.user_tables(bags(ids)).to_dict()
        rows = [pooled[name] for name in self.user_features]
        if self.trait_vectors is not None:
            rows += list((traits.unsqueeze(-1) * self.trait_vectors).unbind(dim=1))
        return self._side(torch.stack(rows, dim=1), self.user_projection)

    def item_side(self, items: torch.Tensor, keep_item: torch.Tensor, categories: torch.Tensor) -> Side:
        ids = {"item": torch.where(keep_item, items + 1, torch.zeros_like(items)), "category": categories}
        pooled = self.item_tables(bags(ids)).to_dict()
        return self._side(torch.stack([pooled[name] for name in self.item_features], dim=1), self.item_projection)

    def _side(self, stacked: torch.Tensor, projection: nn.Linear) -> Side:
        k = self.embedding_dim
        embeddings, weights = stacked[..., :k], stacked[..., k]
        return Side(embeddings, weights.sum(dim=1), projection(embeddings.flatten(1)))

    # scores ------------------------------------------------------------------------------------
    def combine(self, user: Side, item: Side, cross: bool) -> dict[str, torch.Tensor]:
        """Heads for aligned pairs (user row b with item row b) or, with `cross`, every user x every item."""
        if cross:
            pairs = user.total @ item.total.T
            wide = (user.linear + user.own_pairs)[:, None] + (item.linear + item.own_pairs)[None, :] + pairs
            first = user.projection[:, None, :] + item.projection[None, :, :]
        else:
            pairs = (user.total * item.total).sum(-1)
            wide = user.linear + user.own_pairs + item.linear + item.own_pairs + pairs
            first = user.projection + item.projection
        deep = self.heads(self.mlp(first))
        out = self.head_bias + self.wide_scale * wide.unsqueeze(-1) + deep
        return {"click": out[..., 0], "rating": out[..., 1], "wide": wide}


class PersonalityRecommender(RecommenderModule):
    """LightningModule around `PersonalityNet`: builds its features from the DataModule's data.

    Args:
        n_users, n_items: vocabulary sizes (linked from the DataModule by the CLI).
        embedding_dim: k, the size of every field embedding.
        hidden: widths of the deep part's layers.
        dropout: dropout between MLP layers.
        use_traits: feed the five Big-Five traits (False: the same model without them).
        use_demographics, use_tastes: feed the demographic fields / the multi-hot tastes.
        demographic_fields: which demographic columns to use (None: all but `tastes`).
        max_categories: numeric demographic columns with more distinct values are cut into this many bins.
        user_dropout: chance that a training example hides its user id (teaches the cold-start path).
        click_weight, rating_weight: weights of the two losses (0 turns a task off).
        rank_by: "click" (click logit) or "rating" (predicted rating) orders items.
        l2: L2 on the field embeddings an example touches; weight_decay: Adam decay of the MLP.
        lr: Adam learning rate; init_std: N(0, init_std^2) initialization of the tables.
        eval_ks, predict_k: cut-offs of the evaluator and of `predict`.
        sharding: "none" | "table_wise" | "column_wise" | "row_wise": split the TorchRec field tables
            across the processes of a multi-process run (`recsys.models.sharding`; row_wise needs nccl);
            the MLP and heads stay replicated under DDP.
    """

    model_kind = "personality"
    batch_kind = "pointwise"  # the DataModule hands (user, item, click, rating) examples, not triples

    def __init__(self, n_users: int, n_items: int, embedding_dim: int = 16, hidden: list[int] = (64, 32),
                 dropout: float = 0.1, use_traits: bool = True, use_demographics: bool = True,
                 use_tastes: bool = True, demographic_fields: list[str] | None = None, max_categories: int = 8,
                 user_dropout: float = 0.25, click_weight: float = 1.0, rating_weight: float = 1.0,
                 rank_by: RankBy = "click", lr: float = 3e-3, l2: float = 1e-5, weight_decay: float = 0.0,
                 init_std: float = 0.05, eval_ks: list[int] = (10, 20), predict_k: int = 20,
                 sharding: Sharding = "none"):
        super().__init__(eval_ks=eval_ks, predict_k=predict_k)
        check_sharding(sharding)
        if rank_by not in ("click", "rating"):
            raise UserInputError(f"model.rank_by must be 'click' or 'rating', got {rank_by!r}")
        if embedding_dim < 1 or max_categories < 2:
            raise UserInputError("model.embedding_dim must be >= 1 and model.max_categories >= 2")
        if not 0.0 <= user_dropout < 1.0 or not 0.0 <= dropout < 1.0:
            raise UserInputError("model.user_dropout and model.dropout must be in [0, 1)")
        if click_weight < 0 or rating_weight < 0 or click_weight + rating_weight == 0:
            raise UserInputError("model.click_weight and model.rating_weight must be >= 0, not both 0")
        if (rank_by == "click" and click_weight == 0) or (rank_by == "rating" and rating_weight == 0):
            raise UserInputError(f"model.rank_by is {rank_by!r} but that task's weight is 0")
        if lr <= 0 or l2 < 0 or weight_decay < 0:
            raise UserInputError("model.lr must be > 0, model.l2 and model.weight_decay >= 0")
        self.save_hyperparameters()
        self.net: PersonalityNet | None = None
        self.features: FeatureSpace | None = None

    # building from data (never from files) -----------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.net is None:
            datamodule = self._datamodule()
            if not hasattr(datamodule, "pointwise_truth"):
                raise UserInputError("the personality model trains on click/rating examples: use data.class_path: "
                                     "recsys.data.personality_datamodule.PersonalityDataModule")
            hp = self.hparams
            train = datamodule.split.train
            space = FeatureSpace.build(train, hp.demographic_fields if hp.use_demographics else [],
                                       hp.max_categories)
            if hp.use_traits and np.all(space.user_trait_mask == 0):
                raise UserInputError("model.use_traits is true but the data has no Big-Five traits for any user "
                                     "(give profiles, e.g. data.profiles_path, or set model.use_traits false)")
            # Warm = has any training example (a click, a non-click or a rating); the rest go cold.
            self.build(space, warm_users=np.bincount(train.user, minlength=train.n_users) > 0,
                       warm_items=np.bincount(train.item, minlength=train.n_items) > 0)
            self._start_at_base_rates(train)
        if not is_sharded(self.net):
            def assign(wrapped: list[nn.Module]) -> None:
                self.net.user_tables, self.net.item_tables = wrapped

            self.shard_tables([self.net.user_tables, self.net.item_tables], self.hparams.sharding, assign)

    @torch.no_grad()
    def _start_at_base_rates(self, train) -> None:
        """Heads start at the training click rate (as a logit) and mean rating, so early epochs learn
        preferences rather than the offsets."""
        if train.label is not None and len(train):
            rate = float(np.clip(train.label.mean(), 1e-3, 1 - 1e-3))
            self.net.head_bias[0] = float(np.log(rate / (1 - rate)))
        if train.rating is not None and np.isfinite(train.rating).any():
            self.net.head_bias[1] = float(np.nanmean(train.rating))

    def build(self, space: FeatureSpace, warm_users: np.ndarray, warm_items: np.ndarray) -> None:
        """Create the network and the per-user/per-item feature buffers for `space`."""
        hp = self.hparams
        if (space.n_users, space.n_items) != (hp.n_users, hp.n_items):
            raise UserInputError(f"the features describe {space.n_users} users x {space.n_items} items, the model "
                                 f"was configured for {hp.n_users} x {hp.n_items}")
        self.features = space
        self.net = PersonalityNet(
            hp.n_users, hp.n_items, space.n_categories, [f.size for f in space.fields],
            space.n_tastes if hp.use_tastes else 0, hp.embedding_dim, list(hp.hidden), hp.dropout, hp.use_traits,
            hp.init_std)
        rows = space.user_rows(np.arange(space.n_users))
        self.register_buffer("user_demographics", torch.from_numpy(rows["demographics"]))
        self.register_buffer("user_tastes", torch.from_numpy(rows["tastes"]))
        self.register_buffer("user_traits", torch.from_numpy(rows["traits"]))
        self.register_buffer("item_category", torch.from_numpy(space.item_category))
        self.register_buffer("warm_users", torch.as_tensor(np.asarray(warm_users, dtype=bool)))
        self.register_buffer("warm_items", torch.as_tensor(np.asarray(warm_items, dtype=bool)))

    # sides from ids -----------------------------------------------------------------------------
    def _user_side(self, users: torch.Tensor, hide_user: torch.Tensor | None = None):
        keep = self.warm_users[users]
        if hide_user is not None:
            keep = keep & ~hide_user
        return self.net.user_side(users, keep, self.user_demographics[users], self.user_tastes[users],
                                  self.user_traits[users])

    def _item_side(self, items: torch.Tensor):
        return self.net.item_side(items, self.warm_items[items], self.item_category[items])

    def _require_net(self) -> PersonalityNet:
        if self.net is None:
            raise RuntimeError("the personality model is built in setup() from the data, or from a checkpoint")
        return self.net

    # scoring ------------------------------------------------------------------------------------
    def predict_pairs(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Click logit and predicted rating of each (users[b], items[b])."""
        self._require_net()
        users, items = users.to(torch.int64), items.to(torch.int64)
        return self.net.combine(self._user_side(users), self._item_side(items), cross=False)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) ranking scores; users without training rows go through the cold path."""
        self._require_net()
        users = users.to(torch.int64).to(self.user_traits.device)
        items = torch.arange(self.hparams.n_items, device=users.device)
        return self.net.combine(self._user_side(users), self._item_side(items), cross=True)[self.hparams.rank_by]

    @torch.no_grad()
    def score_profiles(self, demographics: torch.Tensor, tastes: torch.Tensor, traits: torch.Tensor) -> torch.Tensor:
        """Scores of users outside the vocabulary from profile features (`FeatureSpace.encode_profile`);
        no user id takes part."""
        net = self._require_net()
        batch = len(traits)
        no_user = torch.zeros(batch, dtype=torch.int64)
        side = net.user_side(no_user, torch.zeros(batch, dtype=torch.bool), demographics.to(torch.int64),
                             tastes.to(torch.int64), traits.to(torch.float32))
        items = torch.arange(self.hparams.n_items)
        return net.combine(side, self._item_side(items), cross=True)[self.hparams.rank_by]

    # the exact scores as an inner product, for the serving bundle ---------------------------------
    def user_embeddings(self) -> torch.Tensor:
        """Every vocabulary user's score row (n_users, n_items): with one-hot item vectors
        (`item_embeddings`) the inner product is the model's own score, so an inner-product bundle
        ranks exactly as the model. Only sensible for catalogs of a few thousand items."""
        if self.hparams.n_items > MAX_EXACT_ITEMS:
            raise UserInputError(f"{self.hparams.n_items} items: exporting exact score rows is limited to "
                                 f"{MAX_EXACT_ITEMS} items")
        users = torch.arange(self.hparams.n_users)
        return torch.cat([self.score_users(users[s:s + 1024]) for s in range(0, len(users), 1024)]).float()

    def item_embeddings(self) -> torch.Tensor:
        """One-hot item vectors (n_items, n_items); see `user_embeddings`."""
        if self.hparams.n_items > MAX_EXACT_ITEMS:
            raise UserInputError(f"{self.hparams.n_items} items: exporting exact score rows is limited to "
                                 f"{MAX_EXACT_ITEMS} items")
        return torch.eye(self.hparams.n_items)

    # training -----------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted click BCE + rating MSE (+ L2 on the touched embeddings) of one batch of examples."""
        hp = self.hparams
        users, items = batch["users"].to(torch.int64), batch["items"].to(torch.int64)
        hide = torch.rand(len(users), device=users.device) < hp.user_dropout if self.training else None
        user, item = self._user_side(users, hide), self._item_side(items)
        out = self.net.combine(user, item, cross=False)
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=users.device)
        heads = (("click", hp.click_weight, F.binary_cross_entropy_with_logits), ("rating", hp.rating_weight, F.mse_loss))
        for head, weight, loss_of in heads:
            target = batch.get(head)
            if weight <= 0 or target is None:
                continue
            known = ~torch.isnan(target)  # NaN: no label of this kind for the row
            if known.any():
                terms[f"{head}_loss"] = loss_of(out[head][known], target[known])
                total = total + weight * terms[f"{head}_loss"]
        if hp.l2 > 0:
            total = total + hp.l2 * (user.embeddings.square().sum((1, 2)) + item.embeddings.square().sum((1, 2))).mean()
        terms["loss"] = total
        return terms

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.loss(batch)
        size = len(batch["users"])
        self.log("train/loss", terms["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=size,
                 sync_dist=True)
        for name in ("click_loss", "rating_loss"):
            if name in terms:
                self.log(f"train/{name}", terms[name], on_step=False, on_epoch=True, batch_size=size)
        return terms["loss"]

    def configure_optimizers(self):
        net = self._require_net()
        tables = [p for name, p in net.named_parameters() if "tables" in name or name == "trait_vectors"]
        dense = [p for name, p in net.named_parameters() if not ("tables" in name or name == "trait_vectors")]
        return torch.optim.Adam([{"params": tables, "weight_decay": 0.0},
                                 {"params": dense, "weight_decay": self.hparams.weight_decay}], lr=self.hparams.lr)

    # evaluation: the evaluator's ranking metrics plus click/rating metrics --------------------------
    def _evaluate_and_log(self, stage: str) -> None:
        super()._evaluate_and_log(stage)
        from recsys.models.personality_metrics import pointwise_metrics

        datamodule = self._datamodule()
        metrics = pointwise_metrics(self, datamodule.pointwise_truth(stage), datamodule.user_groups())
        self.log_dict({k: v for k, v in metrics.metrics.items() if np.isfinite(v)}, on_step=False, on_epoch=True,
                      batch_size=1)
        self.last_pointwise = metrics

    # checkpoints --------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        self._require_net()
        checkpoint["prefengine"]["personality_features"] = self.features.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.net is None:
            block = checkpoint.get("prefengine") or {}
            if "personality_features" not in block:
                raise UserInputError("the checkpoint holds no personality features (not a personality model?)")
            state = checkpoint.get("state_dict", {})
            self.build(FeatureSpace.from_dict(block["personality_features"]),
                       warm_users=state["warm_users"].numpy(), warm_items=state["warm_items"].numpy())
        super().on_load_checkpoint(checkpoint)
