"""The reward learner without Lightning: a reward network, a preference model, full-batch fitting.

`agents.reward_learning.RewardLearner` (the LightningModule the CLI trains) wraps this class; the
experiments use it directly, since they run hundreds of fits of a six-parameter model in worker
processes, where importing Lightning and its per-step bookkeeping would cost more than the fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from agents.planning import TabularMDP, scaled_return, solve
from agents.preferences.dataset import PreferenceDataset
from agents.preferences.models import PartialReturnModel, PreferenceModel, RegretModel, build_reward, to_batch
from agents.preferences.policy_set import PolicySet
from recsys.errors import UserInputError

PREFERENCE_MODELS = ("regret", "partial_return")
REWARDS = ("linear", "mlp")


@dataclass(frozen=True)
class RewardLearningContext:
    """What the learner needs from the environment: its tabular MDP and, for regret, a policy set."""

    mdp: TabularMDP
    policy_set: PolicySet | None = None


class PreferenceLearner(nn.Module):
    """A reward over reward features and the preference model it is fitted through.

    preference_model: "regret" or "partial_return" (how the labels are assumed to arise).
    reward: "linear" (weights over the features, no bias) or "mlp" (hidden_sizes).
    temperature: of the regret model's soft maximum over the policy set (Knox et al.: 0.001).
    """

    def __init__(
        self,
        preference_model: str = "regret",
        reward: str = "linear",
        n_features: int = 6,
        hidden_sizes: tuple[int, ...] = (64, 64),
        temperature: float = 0.001,
    ) -> None:
        super().__init__()
        if preference_model not in PREFERENCE_MODELS:
            raise UserInputError(
                f"preference_model must be one of {PREFERENCE_MODELS}, got {preference_model!r}"
            )
        if reward not in REWARDS:
            raise UserInputError(f"reward must be one of {REWARDS}, got {reward!r}")
        if not temperature > 0:
            raise UserInputError(f"temperature must be > 0, got {temperature}")
        self.preference_model, self.reward_kind = preference_model, reward
        self.n_features, self.temperature = n_features, temperature
        self.reward = build_reward(reward, n_features, tuple(hidden_sizes))
        self.preference: PreferenceModel | None = None
        self.context: RewardLearningContext | None = None
        self._best: tuple[float, dict] | None = None

    def attach(self, context: RewardLearningContext) -> PreferenceLearner:
        """Connect to an environment: builds the preference model (the regret one needs the policy set)."""
        mdp = context.mdp
        if mdp.n_features != self.n_features:
            raise UserInputError(
                f"the model expects {self.n_features} reward features but {mdp.name} has "
                f"{mdp.n_features} ({', '.join(mdp.feature_names)}); set the model's n_features"
            )
        if self.preference_model == "regret":
            if context.policy_set is None:
                raise UserInputError(
                    "the regret preference model needs a policy set (set the data's n_policies > 0)"
                )
            device = next(self.reward.parameters()).device
            self.preference = RegretModel(context.policy_set, mdp.gamma, self.temperature).to(device)
        else:
            self.preference = PartialReturnModel()
        self.context = context
        return self

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        if self.preference is None:
            raise RuntimeError("attach(context) before computing a loss")
        return self.preference.loss(self.reward, batch)

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self.preference.logits(self.reward, batch)

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.reward.parameters(), lr=lr)

    # Knox et al. keep the weights with the lowest full-batch loss seen: with a step size as large
    # as 0.5 the iterates hop around the optimum of this piecewise-smooth loss.
    def track_best(self, loss: Tensor) -> None:
        value = float(loss.detach())
        if self._best is None or value < self._best[0]:
            self._best = (value, {k: v.detach().clone() for k, v in self.reward.state_dict().items()})

    def restore_best(self) -> None:
        if self._best is not None:
            self.reward.load_state_dict(self._best[1])
            self._best = None

    def fit_full_batch(
        self, data: PreferenceDataset, steps: int, lr: float = 0.5, keep_best: bool = True
    ) -> float:
        """Full-batch Adam for `steps` steps; returns the final training loss."""
        if self.preference is None:
            raise RuntimeError("attach(context) before fitting")
        device = next(self.reward.parameters()).device
        batch = self.preference.prepare(to_batch(data, device))
        optimizer = self.make_optimizer(lr)
        self._best = None
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(batch)
            if keep_best:
                self.track_best(loss)
            loss.backward()
            optimizer.step()
        self.restore_best()
        with torch.no_grad():
            return float(self.loss(batch))

    def learned_rewards(self, mdp: TabularMDP | None = None) -> np.ndarray:
        """The learned reward of every (s, a): (S, A), zero in absorbing states."""
        mdp = mdp or self.context.mdp
        device = next(self.reward.parameters()).device
        with torch.no_grad():
            rewards = (
                self.reward(torch.as_tensor(mdp.features, dtype=torch.float64, device=device)).cpu().numpy()
            )
        return np.where(mdp.absorbing[:, None], 0.0, rewards)

    def greedy_policy(self, mdp: TabularMDP | None = None) -> np.ndarray:
        mdp = mdp or self.context.mdp
        return solve(mdp, self.learned_rewards(mdp)).policy

    def scaled_return(self, mdp: TabularMDP | None = None) -> float:
        """Scaled return under the true reward of the policy greedy for the learned one."""
        mdp = mdp or self.context.mdp
        return scaled_return(mdp, self.greedy_policy(mdp))

    def reward_weights(self) -> np.ndarray:
        if self.reward_kind != "linear":
            raise ValueError("only a linear reward has weights")
        return self.reward.weights()
