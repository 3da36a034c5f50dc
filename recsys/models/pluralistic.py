"""Pluralistic preferences for recommendation: K taste prototypes, each user a mixture of them.

After PAL (Chen et al., "Pluralistic alignment framework"): prototypes p_1..p_K live in the
item-embedding space; user u holds mixture logits z_u and scores item i with

    s(u, i) = <softmax(z_u) @ P, v_i> + b_i.

Training is BPR-style: the loss -log sigmoid(s(u, preferred) - s(u, over)) on pairs, which are
either stated comparisons or, from implicit feedback, an observed item over a sampled one. A new
user is placed from M comparisons with everything but their logits frozen (`place_users`): the
logits minimise the same pair loss plus (prior/2) |z - z0|^2, z0 the logits of the training users'
mean mixture, so few comparisons keep a new user near the population and more move them to their type.
The numpy twin the bundle serves with is `bundleformat.pluralistic`; the two agree to 1e-5.

`users: free` swaps the mixture for a free d-vector per user (per-user matrix factorisation), the
per-person baseline; with K = 1 every user shares one prototype, the single shared model.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from recsys.errors import UserInputError
from recsys.models.base import RecommenderModule

UserModel = Literal["mixture", "free"]


class PluralisticRecommender(RecommenderModule):
    """Mixture-of-prototypes user model over learned item embeddings (model kind "pluralistic").

    Args:
        n_users, n_items: sizes (linked from the DataModule by the CLI).
        prototypes: K, the number of taste prototypes.
        embedding_dim: d of the item embeddings and prototypes.
        users: "mixture" (softmax weights over the prototypes) or "free" (a d-vector per user).
        init_std: initial spread of item embeddings and prototypes.
        l2: L2 on the item embeddings, prototypes and user vectors a batch touches.
        logit_l2: L2 on the mixture logits (keeps weights from saturating on little data).
        lr: Adam learning rate.
        placement_prior: the prior weight on |z - z0|^2 when placing a new user from comparisons.
        recommended_comparisons: how many comparisons a new user is asked for (bundles report it).
    """

    model_kind = "pluralistic"

    def __init__(self, n_users: int, n_items: int, prototypes: int = 4, embedding_dim: int = 32,
                 users: UserModel = "mixture", init_std: float = 0.1, l2: float = 1e-4, logit_l2: float = 1e-3,
                 lr: float = 0.01, placement_prior: float = 1.0, recommended_comparisons: int = 10,
                 eval_ks: list[int] = (10, 20), predict_k: int = 20, monitor: str | None = None):
        super().__init__(eval_ks=eval_ks, predict_k=predict_k, monitor=monitor)
        if n_users < 1 or n_items < 2:
            raise UserInputError(f"model needs n_users >= 1 and n_items >= 2, got {n_users} and {n_items}")
        if prototypes < 1 or embedding_dim < 1:
            raise UserInputError(f"model.prototypes and model.embedding_dim must be >= 1, got {prototypes} and "
                                 f"{embedding_dim}")
        if users not in ("mixture", "free"):
            raise UserInputError(f"model.users must be 'mixture' or 'free', got {users!r}")
        if lr <= 0 or l2 < 0 or logit_l2 < 0 or placement_prior <= 0 or init_std <= 0:
            raise UserInputError("model.lr, model.init_std and model.placement_prior must be > 0, model.l2 and "
                                 "model.logit_l2 >= 0")
        if recommended_comparisons < 1:
            raise UserInputError(f"model.recommended_comparisons must be >= 1, got {recommended_comparisons}")
        self.save_hyperparameters()
        self.users_kind = users
        self.item_factors = nn.Parameter(torch.randn(n_items, embedding_dim) * init_std)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.prototypes = nn.Parameter(torch.randn(prototypes, embedding_dim) * init_std)
        if users == "mixture":
            self.user_logits = nn.Parameter(torch.randn(n_users, prototypes) * 0.01)
        else:
            self.user_logits = nn.Parameter(torch.randn(n_users, embedding_dim) * init_std)

    # the user model ---------------------------------------------------------------------------
    def mixture_weights(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) softmax weights of `users` (all users when None); mixture users only."""
        if self.users_kind != "mixture":
            raise UserInputError("mixture weights exist only for model.users 'mixture'")
        logits = self.user_logits if users is None else self.user_logits[users]
        return torch.softmax(logits, dim=-1)

    def user_vectors(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d): the mixture of prototypes (or the free vector) of each user."""
        if self.users_kind == "free":
            return self.user_logits if users is None else self.user_logits[users]
        return self.mixture_weights(users) @ self.prototypes

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        users = users.to(self.item_factors.device)
        return self.user_vectors(users) @ self.item_factors.T + self.item_bias

    def pair_loss(self, users: torch.Tensor, preferred: torch.Tensor, over: torch.Tensor) -> torch.Tensor:
        """Mean BPR loss plus L2 of pairs: users (B,), preferred (B,), over (B,) or (B, n)."""
        over = over.reshape(len(users), -1)
        u = self.user_vectors(users)
        v_pos, v_neg = self.item_factors[preferred], self.item_factors[over]
        margin = ((u * v_pos).sum(-1, keepdim=True) + self.item_bias[preferred, None]
                  - torch.einsum("bd,bnd->bn", u, v_neg) - self.item_bias[over])
        data = nn.functional.softplus(-margin).mean()
        hp = self.hparams
        reg = hp.l2 * (v_pos.square().sum(-1).mean() + v_neg.square().sum(-1).mean()
                       + self.prototypes.square().sum() / max(1, hp.n_users))
        if self.users_kind == "mixture":
            reg = reg + hp.logit_l2 * self.user_logits[users].square().sum(-1).mean()
        else:
            reg = reg + hp.l2 * u.square().sum(-1).mean()
        return data + 0.5 * reg

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        loss = self.pair_loss(batch["users"], batch["positives"], batch["negatives"])
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["users"]))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def fit_pairs(self, users: np.ndarray, preferred: np.ndarray, over: np.ndarray, epochs: int,
                  batch_size: int = 1024, seed: int = 0) -> list[float]:
        """Train on pairs without a Trainer (experiments): Adam over seeded shuffles; epoch losses."""
        users, preferred, over = (torch.as_tensor(np.asarray(a), dtype=torch.int64) for a in (users, preferred, over))
        optimizer = self.configure_optimizers()
        generator = torch.Generator().manual_seed(seed)
        losses = []
        self.train()
        for _ in range(epochs):
            order = torch.randperm(len(users), generator=generator)
            total = 0.0
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                loss = self.pair_loss(users[rows], preferred[rows], over[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            losses.append(total / max(1, len(order)))
        self.eval()
        return losses

    # export: the item bias folded in as one more coordinate, so a score is one inner product ----------
    @torch.no_grad()
    def user_embeddings(self) -> torch.Tensor:
        """(n_users, d + 1): [user vector, 1]."""
        vectors = self.user_vectors().detach()
        return torch.cat([vectors, torch.ones(len(vectors), 1, dtype=vectors.dtype)], dim=1)

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """(n_items, d + 1): [item vector, bias]."""
        return torch.cat([self.item_factors.detach(), self.item_bias.detach()[:, None]], dim=1)

    @torch.no_grad()
    def prototype_embeddings(self) -> torch.Tensor:
        """(K, d + 1): [prototype, 1], so softmax(z) @ these is a user's [vector, 1]."""
        return torch.cat([self.prototypes.detach(), torch.ones(len(self.prototypes), 1)], dim=1)

    # few-shot placement of new users ------------------------------------------------------------
    def prior_logits(self) -> torch.Tensor:
        """z0, where a new user starts: the logits of the training users' mean mixture (free: their mean vector).

        log(mean softmax weights), not the mean of the logits: its mixture of prototypes is exactly the
        training users' mean user vector, the population's preference a shared model would learn.
        """
        if self.users_kind == "free":
            return self.user_logits.detach().mean(dim=0)
        return torch.log(self.mixture_weights().detach().mean(dim=0))

    @torch.no_grad()
    def item_prototype_scores(self) -> torch.Tensor:
        """(n_items, K): <p_k, v_i> + b_i, all that placing a mixture user needs from the model."""
        return self.item_embeddings().double() @ self.prototype_embeddings().double().T

    def place_users(self, preferred: np.ndarray, over: np.ndarray, prior: float | None = None,
                    mask: np.ndarray | None = None) -> torch.Tensor:
        """Fit the logits (or free vectors) of new users from comparisons, the model frozen: (U, K) float64.

        preferred, over: (U, M) item ids, row u the comparisons of new user u (`mask` (U, M) marks
        the real ones when users answered different numbers).
        """
        prior = float(self.hparams.placement_prior if prior is None else prior)
        preferred, over = torch.as_tensor(np.atleast_2d(preferred)), torch.as_tensor(np.atleast_2d(over))
        offset = None
        if self.users_kind == "mixture":
            features = self.item_prototype_scores()
        else:
            features = self.item_factors.detach().double()
            bias = self.item_bias.detach().double()
            offset = bias[preferred] - bias[over]
        diff = features[preferred] - features[over]  # (U, M, K)
        weight = torch.ones(diff.shape[:2], dtype=torch.float64) if mask is None else torch.as_tensor(
            np.asarray(mask, dtype=np.float64))
        return place(diff, weight, self.prior_logits().double(), prior, mixture=self.users_kind == "mixture",
                     offset=offset)

    def score_placed(self, logits: torch.Tensor) -> torch.Tensor:
        """(U, n_items) scores of placed users (float64)."""
        vectors = torch.softmax(logits, -1) @ self.prototypes.detach().double() if self.users_kind == "mixture" \
            else logits
        return vectors @ self.item_factors.detach().double().T + self.item_bias.detach().double()


def place(diff: torch.Tensor, weight: torch.Tensor, z0: torch.Tensor, prior: float, mixture: bool = True,
          offset: torch.Tensor | None = None, iterations: int = 200) -> torch.Tensor:
    """argmin_z sum_m weight_m softplus(-margin_m) + (prior/2)|z - z0|^2 for every user at once (L-BFGS).

    margin_m = softmax(z) . diff_m (mixture) or z . diff_m + offset_m (free); the users are independent, so
    one L-BFGS over all of them solves each one's problem.
    """
    z = z0.expand(diff.shape[0], -1).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([z], lr=1, max_iter=iterations, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        vectors = torch.softmax(z, -1) if mixture else z
        margin = torch.einsum("uk,umk->um", vectors, diff)
        if offset is not None:
            margin = margin + offset
        loss = (weight * nn.functional.softplus(-margin)).sum() + 0.5 * prior * (z - z0).square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return z.detach()
