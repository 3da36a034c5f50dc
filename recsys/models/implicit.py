"""One LightningModule for implicit feedback, objective chosen by config: BPR, BPO or NBPO.

Scores are x_ui = U_u . V_i from a TorchRec matrix-factorization backbone (`mf.py`). Training
data are triples (user u, training positive i, sampled negative j); the loss is the mean over
triples of the per-triple term below (maximised log-likelihood terms are negated):

    BPR   -log s(x_ui - x_uj)                                   (Rendle et al., 2009)
    BPO   -log s(x_ui) - log s(-x_uj)                           (pointwise, Yu & Qin 2020)
    NBPO  -[sg(1-r_ui) log s(x_ui) + sg(s(x_ui)) log(1-r_ui)]
          -[log s(-x_uj) + sg(r_uj) log s(x_uj) + sg(s(x_uj)) log r_uj]

with s the sigmoid, sg the stop-gradient, and r_ui = s(g_ui), g_ui = P_u . Q_i a second, low-rank
factorization (a second backbone instance) of the probability that a true positive is observed
as 0. Observed positives are taken as clean: P(y=1) = s(x)(1-r), P(y=0) = s(-x) + s(x) r. The
stop-gradient weights make plain gradient ascent follow the surrogate gradients of Yu & Qin's
NBPO (an EM-like weighting by the current posteriors); all four factor matrices move in one step.
L2 per triple: (l2/2)(|U_u|^2 + |V_i|^2 + |V_j|^2) and (flip_l2/2)(|P_u|^2 + |Q_i|^2 + |Q_j|^2);
or, with `l2_mode="full_matrix"` (as the authors' code does), on whole matrices: every row shrinks,
touched or not, by a gradient step on (l2/2)(|U|^2 + |V|^2) (and flip_l2 for P, Q) once per batch
of positives, and the per-triple steps carry no L2. Only U . V ranks items at test time.

`engine="autograd"` trains with a torch optimizer on sampled batches; `engine="compiled"` runs
`recsys.models.compiled_sgd` (per-sample SGD in a numba kernel that draws its own positives and
negatives and writes into the TorchRec tables in place) under Lightning manual optimization,
one kernel epoch per training step. Both minimise the same per-triple objective.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from recsys.data.ranks import trainer_rank_and_world
from recsys.errors import UserInputError
from recsys.models.base import RecommenderModule
from recsys.models.mf import MatrixFactorization
from recsys.models.sharding import Sharding, check_sharding, merge_row_updates

log = logging.getLogger(__name__)

OBJECTIVES = ("bpr", "bpo", "nbpo")
Objective = Literal["bpr", "bpo", "nbpo"]
Engine = Literal["autograd", "compiled"]
OptimizerName = Literal["adam", "adagrad", "sgd"]
Schedule = Literal["none", "exponential", "cosine", "plateau"]
L2Mode = Literal["per_triple", "full_matrix"]


def triple_loss(objective: str, x_pos: torch.Tensor, x_neg: torch.Tensor,
                g_pos: torch.Tensor | None = None, g_neg: torch.Tensor | None = None) -> torch.Tensor:
    """Per-triple data loss for positive logits x_pos (B, 1) or (B,) broadcast against x_neg (B, n).

    For NBPO, g_pos/g_neg are the flip logits of the same pairs. Returns a (B, n) tensor.
    """
    x_pos = x_pos.reshape(len(x_pos), -1)
    if objective == "bpr":
        return -F.logsigmoid(x_pos - x_neg)
    if objective == "bpo":
        return -(F.logsigmoid(x_pos) + F.logsigmoid(-x_neg))
    if objective == "nbpo":
        g_pos = g_pos.reshape(len(g_pos), -1)
        rho_pos, rho_neg = torch.sigmoid(g_pos), torch.sigmoid(g_neg)
        positive = (1 - rho_pos).detach() * F.logsigmoid(x_pos) + torch.sigmoid(x_pos).detach() * F.logsigmoid(-g_pos)
        negative = (F.logsigmoid(-x_neg) + rho_neg.detach() * F.logsigmoid(x_neg)
                    + torch.sigmoid(x_neg).detach() * F.logsigmoid(g_neg))
        return -(positive + negative)
    raise UserInputError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")


class ImplicitRecommender(RecommenderModule):
    """Matrix factorization trained on implicit feedback with BPR, BPO or NBPO.

    Args:
        n_users, n_items: table sizes (linked from the DataModule by the CLI).
        objective: "bpr" | "bpo" | "nbpo".
        embedding_dim: preference factor size d (U, V are n x d).
        flip_dim: NBPO flip factor size (P, Q); a low rank keeps r_ui smooth across pairs.
        init_std: N(0, init_std^2) initialization of all factors.
        rho_init: NBPO's starting flip probability; P and Q start so that every r_ui is about it.
        l2, flip_l2: L2 weights on the preference and flip factors touched by a triple.
        l2_mode: "per_triple" (the rows a triple touches, at every step) or "full_matrix" (every
            row of every table, W <- (1 - lr * l2) W, once per batch of positives: the authors'
            full-matrix L2).
        full_matrix_batch: positives per full-matrix L2 step for the compiled engine (the authors'
            5,000): the training positives, in their fixed order, are cut into batches of this size,
            the kernel runs over each in turn and every table shrinks after each. The autograd
            engine shrinks after every training batch (data.batch_size).
        optimizer, lr: torch optimizer (autograd engine); the compiled engine is plain SGD at `lr`.
        flip_lr: learning rate of P and Q (default: `lr`; engine "autograd" only).
        lr_scheduler: "none" | "exponential" (x lr_gamma per epoch) | "cosine" (to 0 over
            max_epochs) | "plateau" (x lr_gamma when `monitor` stops improving).
        engine: "autograd" | "compiled".
        num_threads: threads of the compiled kernel (None: numba's default). The results do not
            depend on it: the kernel's default schedule gives threads disjoint rows.
        hogwild: compiled engine only: let threads race on shared rows instead (Hogwild). Runs
            with more than one thread are then NOT reproducible (its speed: docs/benchmarks.md).
        eval_ks, predict_k: cut-offs of the evaluator and of `predict`.
        monitor: the validation metric to select by (higher is better); the plateau schedule and the
            CLI's default checkpoint watch it. Default: valid/ndcg@20 (or @max(eval_ks)).
        sharding: "none" | "table_wise" | "column_wise" | "row_wise": split the TorchRec tables across
            the processes of a multi-process run (`recsys.models.sharding`; engine "autograd" only;
            row_wise needs GPUs/nccl).

    On N processes the autograd engine trains on each rank's own batches and DDP averages the
    gradients; the compiled engine runs its kernel on the positives of the rank's users and then
    merges the ranks' table updates (`recsys.models.sharding.merge_row_updates`).
    """

    def __init__(self, n_users: int, n_items: int, objective: Objective = "bpr", embedding_dim: int = 64,
                 flip_dim: int = 8, init_std: float = 0.1, rho_init: float = 0.002, l2: float = 0.0,
                 flip_l2: float = 0.0, l2_mode: L2Mode = "per_triple", full_matrix_batch: int = 5000,
                 optimizer: OptimizerName = "adam", lr: float = 1e-3,
                 flip_lr: float | None = None, lr_scheduler: Schedule = "none", lr_gamma: float = 0.5,
                 engine: Engine = "autograd", num_threads: int | None = None, hogwild: bool = False,
                 eval_ks: list[int] = (10, 20), predict_k: int = 20, monitor: str | None = None,
                 sharding: Sharding = "none"):
        super().__init__(eval_ks=eval_ks, predict_k=predict_k, monitor=monitor)
        check_sharding(sharding)
        if engine == "compiled" and sharding != "none":
            raise UserInputError("model.sharding needs model.engine 'autograd': the compiled kernel writes whole "
                                 "tables in place, which sharded tables are not")
        if objective not in OBJECTIVES:
            raise UserInputError(f"model.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if engine not in ("autograd", "compiled"):
            raise UserInputError(f"model.engine must be 'autograd' or 'compiled', got {engine!r}")
        if l2_mode not in ("per_triple", "full_matrix"):
            raise UserInputError(f"model.l2_mode must be per_triple or full_matrix, got {l2_mode!r}")
        if full_matrix_batch < 1:
            raise UserInputError(f"model.full_matrix_batch must be >= 1, got {full_matrix_batch}")
        if l2_mode == "full_matrix" and sharding != "none":
            raise UserInputError("model.l2_mode full_matrix shrinks whole tables in place, which sharded tables are not")
        if optimizer not in ("adam", "adagrad", "sgd"):
            raise UserInputError(f"model.optimizer must be adam, adagrad or sgd, got {optimizer!r}")
        if lr_scheduler not in ("none", "exponential", "cosine", "plateau"):
            raise UserInputError(f"model.lr_scheduler must be none, exponential, cosine or plateau, got {lr_scheduler!r}")
        if n_users < 1 or n_items < 2 or embedding_dim < 1 or flip_dim < 1:
            raise UserInputError("model needs n_users >= 1, n_items >= 2, embedding_dim >= 1, flip_dim >= 1")
        if not 0.0 < rho_init < 0.5:
            raise UserInputError(f"model.rho_init must be in (0, 0.5), got {rho_init}")
        if lr <= 0 or (flip_lr is not None and flip_lr <= 0) or l2 < 0 or flip_l2 < 0:
            raise UserInputError("model.lr and model.flip_lr must be > 0, model.l2 and model.flip_l2 >= 0")
        if hogwild and engine != "compiled":
            raise UserInputError("model.hogwild applies to engine 'compiled' only")
        if engine == "compiled" and flip_lr is not None:
            raise UserInputError("model.flip_lr applies to engine 'autograd' only: the compiled kernel steps all "
                                 "factors at model.lr")
        self.save_hyperparameters()
        self.objective, self.engine = objective, engine
        self.model_kind = f"implicit-{objective}"
        self.preference = MatrixFactorization(n_users, n_items, embedding_dim, init_std)
        self.flip = None
        if objective == "nbpo":
            self.flip = MatrixFactorization(n_users, n_items, flip_dim, init_std, prefix="flip_",
                                            logit_offset=math.log(rho_init / (1 - rho_init)))
        # The compiled kernel steps the tables itself; Lightning must not call backward/step.
        self.automatic_optimization = engine == "autograd"
        self._kernels = None  # the compiled kernels, one per batch of positives (full_matrix) or one for all
        self._item_rows: torch.Tensor | None = None  # the item table, held during a sharded evaluation

    def _factorizations(self) -> list[MatrixFactorization]:
        return [m for m in (self.preference, self.flip) if m is not None]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if not self.preference.sharded:
            def assign(wrapped: list[torch.nn.Module]) -> None:
                for index, factorization in enumerate(self._factorizations()):
                    factorization.use_collections(*wrapped[2 * index:2 * index + 2])

            collections = [c for m in self._factorizations() for c in m.collections()]
            self.shard_tables(collections, self.hparams.sharding, assign)

    @property
    def training_batches(self) -> str:
        """What the DataModule should hand each step: sampled triples, or every positive for the kernel."""
        return "positives" if self.engine == "compiled" else "triples"

    # ranking -----------------------------------------------------------------------------
    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.preference.score_all(users.to(self.device), item_rows=self._item_rows)

    @contextlib.contextmanager
    def scoring_session(self) -> Iterator[None]:
        """Sharded tables: look the item table up once (all ranks together), not once per user batch."""
        if not self.preference.sharded:
            yield
            return
        with torch.no_grad():
            self._item_rows = self.preference.all_items()
        try:
            yield
        finally:
            self._item_rows = None

    def user_embeddings(self) -> torch.Tensor:
        """(n_users, d); with sharded tables a lookup every process must make together."""
        with torch.no_grad():
            return self.preference.all_users().detach()

    def item_embeddings(self) -> torch.Tensor:
        with torch.no_grad():
            return self.preference.all_items().detach()

    @torch.no_grad()
    def flip_probability(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """NBPO's r_ui = P(observed 0 | truly 1) for pairs (users[b], items[b])."""
        if self.flip is None:
            raise UserInputError(f"flip probabilities exist only for objective 'nbpo', not {self.objective!r}")
        return torch.sigmoid(self.flip(users.to(torch.int64), items.to(torch.int64)))

    # the objective --------------------------------------------------------------------------
    def loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean per-triple loss (data + L2) of users (B,), positives (B,), negatives (B, n)."""
        items = torch.cat([positives.reshape(-1, 1), negatives], dim=1)
        u = self.preference.embed_users(users)
        v = self.preference.embed_items(items)
        x = torch.einsum("bd,bnd->bn", u, v)
        n = negatives.shape[1]
        row_sq = (u.square().sum(-1, keepdim=True) + v[:, :1].square().sum(-1)) + v[:, 1:].square().sum(-1)
        g_pos = g_neg = None
        out: dict[str, torch.Tensor] = {}
        flip_sq = torch.zeros((), device=x.device)
        if self.flip is not None:
            p = self.flip.embed_users(users)
            q = self.flip.embed_items(items)
            g = torch.einsum("bd,bnd->bn", p, q)
            g_pos, g_neg = g[:, :1], g[:, 1:]
            flip_sq = (p.square().sum(-1, keepdim=True) + q[:, :1].square().sum(-1)) + q[:, 1:].square().sum(-1)
            out["rho_pos"] = torch.sigmoid(g_pos).mean().detach()
            out["rho_neg"] = torch.sigmoid(g_neg).mean().detach()
        data = triple_loss(self.objective, x[:, :1], x[:, 1:], g_pos, g_neg).mean()
        reg = 0.5 * self.hparams.l2 * row_sq.mean() + 0.5 * self.hparams.flip_l2 * flip_sq.expand(len(users), n).mean()
        if self.hparams.l2_mode == "full_matrix":
            reg = torch.zeros((), device=x.device)  # applied to whole tables at the epoch's end instead
        out["data"] = data.detach()
        out["loss"] = data + reg
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        if self.engine == "compiled":
            return self._compiled_step(batch)
        out = self.loss(batch["users"], batch["positives"], batch["negatives"])
        size = len(batch["users"])
        self.log("train/loss", out["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=size,
                 sync_dist=True)
        if "rho_pos" in out:
            self.log_dict({"train/rho_pos": out["rho_pos"], "train/rho_neg": out["rho_neg"]},
                          on_step=False, on_epoch=True, batch_size=size)
        return out["loss"]

    # compiled engine ------------------------------------------------------------------------
    def _compiled_step(self, batch: dict[str, torch.Tensor]) -> None:
        """One kernel epoch over the batch's positives (the DataModule hands all of them at once)."""
        from recsys.models.compiled_sgd import CompiledSGD

        datamodule = self._datamodule()
        rank, world = trainer_rank_and_world(self.trainer)
        full_matrix = self.hparams.l2_mode == "full_matrix"
        if full_matrix and world > 1:
            raise UserInputError("model.l2_mode full_matrix with the compiled engine runs in one process: the ranks' "
                                 "merged row updates would shrink every row once per rank")
        if self._kernels is None:
            indptr, indices = datamodule.train_csr()
            users, positives = batch["users"].numpy(), batch["positives"].numpy()
            size = self.hparams.full_matrix_batch if full_matrix else len(users)
            self._kernels = [CompiledSGD(
                users[lo:lo + size], positives[lo:lo + size], indptr, indices, self.hparams.n_items,
                objective=self.objective, lr=self.hparams.lr, reg=self._triple_l2(self.hparams.l2),
                n_neg=datamodule.negatives, flip_reg=self._triple_l2(self.hparams.flip_l2),
                item_weights=datamodule.sampler.item_weights, num_threads=self.hparams.num_threads,
                schedule="hogwild" if self.hparams.hogwild else "stratified") for lo in range(0, len(users), size)]
            if self.hparams.hogwild and self._kernels[0].num_threads > 1:
                log.warning("model.hogwild: %d threads race on shared rows; this run is not reproducible",
                            self._kernels[0].num_threads)
        optimizer = self.optimizers()
        lr = optimizer.param_groups[0]["lr"]
        flip = {}
        if self.flip is not None:
            flip = {"flip_user_w": self.flip.user_weight, "flip_item_w": self.flip.item_weight}
        seed = (datamodule.sample_seed * 1_000_003 + self.current_epoch + rank * 7_919_000_003) % 2**62
        tables = [self.preference.user_weight, self.preference.item_weight, *flip.values()]
        start = [t.detach().clone() for t in tables] if world > 1 else []
        total, samples = 0.0, 0
        for index, kernel in enumerate(self._kernels):
            part_seed = (seed + index * 1_000_000_007) % 2**62
            loss = kernel.epoch(self.preference.user_weight, self.preference.item_weight, seed=part_seed, lr=lr, **flip)
            total, samples = total + loss * kernel.samples_per_epoch, samples + kernel.samples_per_epoch
            if full_matrix:
                self._shrink_full_matrices()
        loss = total / samples
        for table, before in zip(tables, start):  # each rank trained on its own users' positives
            merge_row_updates(table, before)
        # No parameter has a gradient, so this changes nothing; it advances Lightning's global step,
        # which checkpointing and logging count on under manual optimization.
        optimizer.step()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=1, sync_dist=True)
        self.log("train/samples", float(samples), on_step=False, on_epoch=True,
                 batch_size=1, reduce_fx="sum", sync_dist=True)  # summed over the ranks too

    def _triple_l2(self, weight: float) -> float:
        return weight if self.hparams.l2_mode == "per_triple" else 0.0

    @torch.no_grad()
    def _shrink_full_matrices(self) -> None:
        """Full-matrix L2: one gradient step on (l2/2)|W|^2 for every table, at each group's learning rate."""
        groups = self.optimizers().param_groups
        steps = [(self.preference, groups[0]["lr"] * self.hparams.l2)]
        if self.flip is not None:
            steps.append((self.flip, groups[-1]["lr"] * self.hparams.flip_l2))
        for factorization, decay in steps:
            if not 0.0 <= decay < 1.0:
                raise UserInputError(f"full-matrix L2: lr x l2 = {decay:g} must be below 1 (it would flip or zero "
                                     "the factors); lower model.l2 / model.flip_l2")
            for table in (factorization.user_weight, factorization.item_weight):
                table.mul_(1.0 - decay)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.engine == "autograd" and self.hparams.l2_mode == "full_matrix":
            self._shrink_full_matrices()

    def on_train_epoch_end(self) -> None:
        if self.engine != "compiled" or self.hparams.lr_scheduler in ("none", "plateau"):
            return
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def on_validation_epoch_end(self) -> None:
        if self.engine == "compiled" and self.hparams.lr_scheduler == "plateau" and not self.trainer.sanity_checking:
            value = self.trainer.callback_metrics.get(self.monitor)
            if value is not None:
                self.lr_schedulers().step(value)

    # optimization -----------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        groups = [{"params": list(self.preference.parameters()), "lr": hp.lr}]
        if self.flip is not None:
            groups.append({"params": list(self.flip.parameters()), "lr": hp.flip_lr or hp.lr})
        if self.engine == "compiled":
            # Holds the learning rate for schedulers and LearningRateMonitor; the kernel does the steps.
            optimizer = torch.optim.SGD(groups, lr=hp.lr)
        else:
            optimizer = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}[hp.optimizer](
                groups, lr=hp.lr)
        if hp.lr_scheduler == "none":
            return optimizer
        if hp.lr_scheduler == "exponential":
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=hp.lr_gamma)
        elif hp.lr_scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs or 1))
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=hp.lr_gamma, patience=1)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": self.monitor, "strict": False}}

    # diagnostics ------------------------------------------------------------------------------
    def flip_auc(self, users: np.ndarray, items: np.ndarray, is_noise: np.ndarray) -> float:
        """AUC of r_ui for telling noisy pairs (is_noise=True) from clean ones (0.5 = no signal)."""
        from recsys.models.diagnostics import auc

        rho = self.flip_probability(torch.as_tensor(users), torch.as_tensor(items)).numpy()
        return auc(rho, np.asarray(is_noise, dtype=bool))
