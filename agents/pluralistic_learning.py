"""Pluralistic reward learning under Lightning: `PluralisticLearner` + `PopulationDataModule`.

    python -m agents fit -c configs/agents/pluralistic.yaml

The data module draws a population of teachers with K latent reward types on a tabular board
(agents.preferences.population), gives each teacher `pairs_per_teacher` labelled pairs for training
and `val_pairs_per_teacher` for validation, and (for the regret form) a policy set. The learner fits
K prototypes and every teacher's weights over them (agents.preferences.pluralistic); validation
reports the cross-entropy, the pair accuracy against the teachers' noise-free preferences and the
adjusted Rand index of each teacher's dominant prototype against its true type.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from agents.preferences.pluralistic import PairScorer, PluralisticReward, people_batch
from agents.preferences.policy_set import sample_policy_set
from agents.preferences.population import Population, PopulationConfig, make_population
from agents.reward_learning import _FullBatch, tabular_mdp
from recsys.errors import UserInputError
from recsys.evaluation.clustering import adjusted_rand_index


class PluralisticLearner(pl.LightningModule):
    """K reward prototypes and per-person mixture weights, fitted full-batch with Adam.

    n_people must equal the data module's n_teachers. form: "mixture" (mixture of Bradley-Terry) or
    "ideal_point" (each person's reward a point in the prototypes' hull). preference_model:
    "partial_return" or "regret". logit_l2: strength of the Gaussian prior on the weights' logits.
    """

    def __init__(
        self,
        n_people: int = 100,
        n_types: int = 4,
        n_features: int = 6,
        form: Literal["mixture", "ideal_point"] = "mixture",
        preference_model: Literal["partial_return", "regret"] = "partial_return",
        latent_dim: int | None = None,
        lr: float = 0.05,
        logit_l2: float = 0.03,
        temperature: float = 0.001,
        seed: int = 0,
        num_threads: int | None = 1,
    ) -> None:
        super().__init__()
        if not lr > 0 or logit_l2 < 0:
            raise UserInputError(f"lr must be > 0 and logit_l2 >= 0, got {lr}, {logit_l2}")
        self.save_hyperparameters()
        self.model = PluralisticReward(
            n_people, n_types, n_features, form, latent_dim, generator=torch.Generator().manual_seed(seed)
        )
        self.scorer: PairScorer | None = None
        self._threads_before: int | None = None

    def setup(self, stage: str) -> None:
        if self.hparams.num_threads is not None and self._threads_before is None:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.hparams.num_threads)
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, PopulationDataModule):
            raise UserInputError("PluralisticLearner needs a PopulationDataModule (data: class_path ...)")
        datamodule.setup(stage)
        h = self.hparams
        if datamodule.population.n_teachers != h.n_people:
            raise UserInputError(
                f"model.n_people is {h.n_people} but the data has {datamodule.population.n_teachers} teachers"
            )
        if datamodule.population.mdp.n_features != h.n_features:
            raise UserInputError(
                f"model.n_features is {h.n_features} but the board has {datamodule.population.mdp.n_features}"
            )
        if self.scorer is None:
            self.scorer = datamodule.scorer(h.preference_model, h.temperature)
            datamodule.prepare_for(self.scorer)

    def teardown(self, stage: str) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.model.loss(self.scorer, batch, self.hparams.logit_l2)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        p = self.model.probabilities(self.scorer, batch).clamp(1e-12, 1 - 1e-12)
        loss = torch.nn.functional.binary_cross_entropy(p, batch["labels"])
        truth = batch["truth"]
        strict = truth != 0.5
        accuracy = ((p[strict] > 0.5) == (truth[strict] > 0.5)).to(p.dtype).mean()
        population: Population = self.trainer.datamodule.population
        found = self.model.mixtures().argmax(1).detach().cpu().numpy()
        ari = adjusted_rand_index(population.dominant_type, found)
        self.log_dict(
            {"val/loss": loss, "val/accuracy": accuracy, "val/type_ari": ari},
            prog_bar=True,
            batch_size=len(p),
        )

    def on_fit_end(self) -> None:
        weights = self.model.prototype_weights().detach().cpu().numpy()
        for k, w in enumerate(weights):
            rank_zero_info(f"prototype {k}: " + ", ".join(f"{x:+.2f}" for x in w))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["prefengine"] = {
            "model_kind": "pluralistic_reward",
            "preference_model": self.hparams.preference_model,
            "form": self.hparams.form,
            "prototype_weights": self.model.prototype_weights().detach().cpu().tolist(),
            "mixtures": self.model.mixtures().detach().cpu().tolist(),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)


class PopulationDataModule(pl.LightningDataModule):
    """A population of typed teachers on a registered tabular environment, and their labelled pairs.

    n_types / mixing / alpha / type_scale / teacher / teacher_temperature: see PopulationConfig.
    n_policies: the regret form's policy set (unused by partial return). Training is full batch:
    `steps_per_epoch` Adam steps per epoch.
    """

    def __init__(
        self,
        env: str = "prefengine/Delivery-v0",
        env_kwargs: dict | None = None,
        n_teachers: int = 100,
        n_types: int = 4,
        mixing: Literal["pure", "dirichlet"] = "pure",
        alpha: float = 0.3,
        type_scale: float = 3.0,
        teacher: Literal["partial_return", "regret"] = "partial_return",
        teacher_temperature: float = 1.0,
        segment_length: int = 3,
        pairs_per_teacher: int = 20,
        val_pairs_per_teacher: int = 20,
        n_policies: int = 100,
        steps_per_epoch: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if pairs_per_teacher < 1 or val_pairs_per_teacher < 1 or steps_per_epoch < 1:
            raise UserInputError("pairs_per_teacher, val_pairs_per_teacher and steps_per_epoch must be >= 1")
        self.save_hyperparameters()
        self.config = PopulationConfig(
            n_types=n_types,
            mixing=mixing,
            alpha=alpha,
            type_scale=type_scale,
            statistic=teacher,
            temperature=teacher_temperature,
            segment_length=segment_length,
        )
        self.population: Population | None = None
        self.policy_set = None
        self.train_batch: dict[str, Tensor] | None = None
        self.val_batch: dict[str, Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.population is not None:
            return
        h = self.hparams
        mdp = tabular_mdp(h.env, h.env_kwargs or {})
        rng = np.random.default_rng(h.seed)
        self.population = make_population(mdp, h.n_teachers, self.config, rng)
        if h.n_policies > 0:
            self.policy_set = sample_policy_set(mdp, h.n_policies, rng)
        labelled = self.population.label(h.pairs_per_teacher + h.val_pairs_per_teacher, rng)
        # unprepared: the learner prepares them once for its own preference form (`prepare_for`)
        n = h.pairs_per_teacher
        self.train_batch = people_batch([d.subset(slice(0, n)) for d, _ in labelled], None)
        self.val_batch = people_batch([d.subset(slice(n, None)) for d, _ in labelled], None)
        self.val_batch["truth"] = torch.as_tensor(np.concatenate([exact[n:] for _, exact in labelled]))

    def scorer(self, preference_model: str, temperature: float) -> PairScorer:
        if preference_model == "regret" and self.policy_set is None:
            raise UserInputError("the regret form needs a policy set: set data n_policies > 0")
        return PairScorer(preference_model, self.policy_set, self.population.mdp.gamma, temperature)

    def prepare_for(self, scorer: PairScorer) -> None:
        self.train_batch, self.val_batch = scorer.prepare(self.train_batch), scorer.prepare(self.val_batch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_FullBatch(self.train_batch, self.hparams.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_FullBatch(self.val_batch, 1), batch_size=None)
