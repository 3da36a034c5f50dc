"""Learn a reward function from segment-pair preferences (LightningModule + LightningDataModule).

`RewardLearner` fits a linear (or MLP) reward over the environment's reward features under the
partial-return or the regret preference model, by cross-entropy on the preference labels with
each pair seen in both orders. `PreferenceDataModule` builds everything the learner needs from a
registered tabular environment: preferences (a JSON-lines file, or synthetic ones from a teacher),
and for the regret model the policy set whose successor features approximate V*.

With the environment's true reward known, validation reports the scaled return of the policy that
is greedy for the learned reward: 1 = optimal, 0 = uniform random (Knox et al.).
"""

from __future__ import annotations

import logging
from typing import Literal

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from agents.planning import TabularMDP
from agents.preferences.dataset import PreferenceDataset
from agents.preferences.learner import PreferenceLearner, RewardLearningContext
from agents.preferences.models import to_batch
from agents.preferences.policy_set import PAPER_REWARD_VALUES, sample_policy_set
from agents.preferences.segments import sample_segment_pairs
from agents.preferences.teachers import Teacher
from recsys.errors import UserInputError

logger = logging.getLogger(__name__)


class RewardLearner(pl.LightningModule):
    """A reward over reward features, learned from preferences (the Lightning face of PreferenceLearner).

    preference_model: "regret" or "partial_return" (how the labels are assumed to arise).
    reward: "linear" (weights over features) or "mlp" (hidden_sizes).
    lr: Adam step size (Knox et al.: 0.5 with full-batch steps).
    temperature: of the regret model's soft maximum over the policy set.
    keep_best: when training full-batch, end with the weights of the lowest training loss seen.
    num_threads: torch intra-op threads while fitting (null: leave as is). The tensors are tiny, so
        one thread is fastest; on a busy 2-core machine the default two were measured 6x slower.
    The loss is the cross-entropy over both orders of every pair (see PreferenceModel.loss).
    """

    def __init__(
        self,
        preference_model: Literal["regret", "partial_return"] = "regret",
        reward: Literal["linear", "mlp"] = "linear",
        n_features: int = 6,
        hidden_sizes: tuple[int, ...] = (64, 64),
        lr: float = 0.5,
        temperature: float = 0.001,
        keep_best: bool = True,
        num_threads: int | None = 1,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise UserInputError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters()
        self.learner = PreferenceLearner(
            preference_model, reward, n_features, tuple(hidden_sizes), temperature
        )
        self._threads_before: int | None = None

    @property
    def context(self) -> RewardLearningContext | None:
        return self.learner.context

    def attach(self, context: RewardLearningContext) -> RewardLearner:
        self.learner.attach(context)
        return self

    def setup(self, stage: str) -> None:
        if self.hparams.num_threads is not None and self._threads_before is None:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.hparams.num_threads)
        if self.learner.preference is None:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None or not hasattr(datamodule, "context"):
                raise UserInputError("RewardLearner needs a PreferenceDataModule (data: class_path ...)")
            datamodule.setup(stage)
            self.attach(datamodule.context)

    def teardown(self, stage: str) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.learner.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        if self.hparams.keep_best and getattr(self.trainer.datamodule, "full_batch", False):
            self.learner.track_best(loss)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits, labels = self.learner.logits(batch), batch["labels"]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        strict = labels != 0.5
        accuracy = ((logits[strict] > 0) == (labels[strict] > 0.5)).to(logits.dtype).mean()
        self.log_dict({"val/loss": loss, "val/accuracy": accuracy}, prog_bar=True, batch_size=len(labels))

    def on_validation_epoch_end(self) -> None:
        if self.context is not None and self.context.mdp.reward_weights is not None:
            self.log("val/scaled_return", self.learner.scaled_return(), prog_bar=True)

    def on_train_end(self) -> None:
        self.learner.restore_best()

    def on_fit_end(self) -> None:
        if self.context is None:
            return
        if self.hparams.reward == "linear":
            names = self.context.mdp.feature_names
            weights = ", ".join(f"{n}={w:+.3f}" for n, w in zip(names, self.learner.reward_weights()))
            rank_zero_info(f"learned reward weights ({self.hparams.preference_model} model): {weights}")
        if self.context.mdp.reward_weights is not None:
            rank_zero_info(
                f"scaled return of the greedy policy for the learned reward: {self.learner.scaled_return():.4f}"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        info: dict = {"model_kind": "reward_learner", "preference_model": self.hparams.preference_model}
        if self.context is not None:
            info["env"] = self.context.mdp.name
            info["feature_names"] = list(self.context.mdp.feature_names)
        if self.hparams.reward == "linear":
            info["reward_weights"] = self.learner.reward_weights().tolist()
        info["metrics"] = (
            {k: float(v) for k, v in self.trainer.callback_metrics.items()} if self._trainer else {}
        )
        checkpoint["prefengine"] = info

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.learner.make_optimizer(self.hparams.lr)


class _FullBatch(Dataset):
    """One item: the whole data set, repeated `steps` times per epoch (one optimizer step each)."""

    def __init__(self, batch: dict[str, Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.batch


class _Pairs(Dataset):
    def __init__(self, batch: dict[str, Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["labels"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.batch.items()}


class PreferenceDataModule(pl.LightningDataModule):
    """Preferences over segment pairs of a tabular Gymnasium environment.

    env / env_kwargs: a registered id whose unwrapped env has a `mdp` (TabularMDP), e.g.
        "prefengine/Delivery-v0" or "prefengine/RandomGrid-v0" with {"board_seed": 3}.
    preferences: a JSON-lines file of labelled pairs; if None, `n_pairs` pairs of
        `segment_length`-step segments are sampled and labelled by a synthetic teacher.
    save_preferences: where to write the generated preferences (JSON lines), if anywhere.
    n_policies / policy_reward_values / remove_optimal_policy: the regret model's policy set.
    batch_size: None for full-batch training (`steps_per_epoch` Adam steps per epoch), else mini-batches.
    val_fraction: pairs held out for validation (loss, accuracy, scaled return).
    """

    def __init__(
        self,
        env: str = "prefengine/Delivery-v0",
        env_kwargs: dict | None = None,
        preferences: str | None = None,
        save_preferences: str | None = None,
        n_pairs: int = 1000,
        segment_length: int = 3,
        teacher: Literal["regret", "partial_return"] = "regret",
        teacher_regret_form: Literal["values", "advantages"] = "values",
        teacher_stochastic: bool = False,
        teacher_temperature: float = 1.0,
        mistake_rate: float = 0.0,
        skip_rate: float = 0.0,
        n_policies: int = 100,
        policy_reward_values: tuple[float, ...] = PAPER_REWARD_VALUES,
        remove_optimal_policy: bool = True,
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_pairs < 1 or segment_length < 1 or steps_per_epoch < 1 or n_policies < 0:
            raise UserInputError(
                "n_pairs, segment_length and steps_per_epoch must be >= 1 and n_policies >= 0"
            )
        if batch_size is not None and batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1 or null (full batch), got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise UserInputError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.teacher = Teacher(
            statistic=teacher,
            regret_form=teacher_regret_form,
            stochastic=teacher_stochastic,
            temperature=teacher_temperature,
            mistake_rate=mistake_rate,
            skip_rate=skip_rate,
        )
        self.context: RewardLearningContext | None = None
        self.train_data: PreferenceDataset | None = None
        self.val_data: PreferenceDataset | None = None

    @property
    def full_batch(self) -> bool:
        return self.hparams.batch_size is None

    def setup(self, stage: str | None = None) -> None:
        if self.context is not None:
            return
        h = self.hparams
        mdp = tabular_mdp(h.env, h.env_kwargs or {})
        rng = np.random.default_rng(h.seed)
        if h.preferences is not None:
            data = PreferenceDataset.load(h.preferences)
            _check_fits(data, mdp, h.preferences)
        else:
            pairs = sample_segment_pairs(mdp, h.n_pairs, h.segment_length, rng)
            data = self.teacher.label(mdp, pairs, rng)
        if h.save_preferences:
            logger.info("wrote %d preferences to %s", len(data), data.save(h.save_preferences))
        policy_set = None
        if h.n_policies > 0:
            policy_set = sample_policy_set(
                mdp, h.n_policies, rng, tuple(h.policy_reward_values), remove_optimal=h.remove_optimal_policy
            )
        self.context = RewardLearningContext(mdp, policy_set)
        order = rng.permutation(len(data))
        n_val = int(round(h.val_fraction * len(data)))
        self.val_data, self.train_data = data.subset(order[:n_val]), data.subset(order[n_val:])
        if len(self.train_data) == 0:
            raise UserInputError("no training pairs left; lower val_fraction or add preferences")

    def train_dataloader(self) -> DataLoader:
        batch = to_batch(self.train_data)
        if self.full_batch:
            return DataLoader(_FullBatch(batch, self.hparams.steps_per_epoch), batch_size=None)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(
            _Pairs(batch), batch_size=self.hparams.batch_size, shuffle=True, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        if self.val_data is None or len(self.val_data) == 0:
            return []
        return DataLoader(_FullBatch(to_batch(self.val_data), 1), batch_size=None)


def tabular_mdp(env_id: str, env_kwargs: dict) -> TabularMDP:
    """The exact MDP behind a registered tabular environment."""
    try:
        env = gym.make(env_id, **env_kwargs)
    except (gym.error.Error, TypeError, ValueError) as error:  # unknown id, bad or unknown kwargs
        raise UserInputError(f"cannot make environment {env_id!r} with {env_kwargs}: {error}") from None
    mdp = getattr(env.unwrapped, "mdp", None)
    env.close()
    if not isinstance(mdp, TabularMDP):
        raise UserInputError(f"environment {env_id!r} has no tabular model (`env.unwrapped.mdp`)")
    return mdp


def _check_fits(data: PreferenceDataset, mdp: TabularMDP, path: str) -> None:
    if data.n_features != mdp.n_features:
        raise UserInputError(
            f"{path}: {data.n_features} reward features, but {mdp.name} has {mdp.n_features}"
        )
    if data.pairs.states.max(initial=0) >= mdp.n_states:
        raise UserInputError(
            f"{path}: state ids reach {data.pairs.states.max()}, but {mdp.name} has {mdp.n_states} states"
        )
