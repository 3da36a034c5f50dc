"""Reward networks and the two preference models that turn a reward into P(sigma_1 > sigma_2).

partial return:  P = sigmoid(sum_t r(phi_t)[sigma_1] - sum_t r(phi_t)[sigma_2])
regret:          P = sigmoid(regret(sigma_2) - regret(sigma_1)),
                 regret(sigma) = V*(s_0) - (sum_t gamma^t r(phi_t) + gamma^k V*(s_k))

V* is not differentiable in the reward, so the regret model approximates it by a soft maximum
over the values of a fixed set of policies, V^pi(s) = occupancy[pi, s] . r(basis) (successor
features), with weights softmax(V^pi(s) / temperature) (Knox et al. use temperature 0.001).

The preference models hold no parameters: the reward network is passed in, so a checkpoint
carries the reward alone.

A batch is a dict of tensors: states (B, 2, L+1) long, features (B, 2, L, d) float64,
lengths (B, 2) long and labels (B,) float64 = P(first preferred).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from agents.preferences.dataset import PreferenceDataset
from agents.preferences.policy_set import PolicySet

DTYPE = torch.float64  # the soft maximum at temperature 1e-3 needs the headroom


class LinearReward(nn.Module):
    """r(phi) = phi . w, no bias (a constant per step is not identifiable from partial returns)."""

    is_linear = True

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1, bias=False, dtype=DTYPE)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features)[..., 0]

    def weights(self) -> np.ndarray:
        return self.linear.weight.detach().cpu().numpy()[0].copy()


class MLPReward(nn.Module):
    """r(phi) = MLP(phi): a reward that need not be linear in the features."""

    is_linear = False

    def __init__(self, n_features: int, hidden_sizes: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden, dtype=DTYPE), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1, dtype=DTYPE))
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)[..., 0]


def build_reward(kind: str, n_features: int, hidden_sizes: tuple[int, ...] = (64, 64)) -> nn.Module:
    if kind == "linear":
        return LinearReward(n_features)
    if kind == "mlp":
        return MLPReward(n_features, tuple(hidden_sizes))
    raise ValueError(f"reward must be 'linear' or 'mlp', got {kind!r}")


def to_batch(data: PreferenceDataset, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    pairs = data.pairs
    return {
        "states": torch.as_tensor(pairs.states, dtype=torch.long, device=device),
        "features": torch.as_tensor(pairs.features, dtype=DTYPE, device=device),
        "lengths": torch.as_tensor(pairs.lengths, dtype=torch.long, device=device),
        "labels": torch.as_tensor(data.labels, dtype=DTYPE, device=device),
    }


def _step_mask(batch: dict[str, Tensor]) -> Tensor:
    L = batch["features"].shape[-2]
    return torch.arange(L, device=batch["lengths"].device) < batch["lengths"][..., None]


def summed_features(batch: dict[str, Tensor], gamma: float = 1.0) -> Tensor:
    """sum_t gamma^t phi_t over the steps each segment took: (B, 2, d)."""
    L = batch["features"].shape[-2]
    weights = _step_mask(batch) * gamma ** torch.arange(L, dtype=DTYPE, device=batch["features"].device)
    return (batch["features"] * weights[..., None]).sum(-2)


class PreferenceModel(nn.Module):
    """Scores each segment (higher = preferred); the logit of a pair is the score difference.

    `prepare` adds what does not depend on the reward, once per batch; for a linear reward the
    logit of a pair then needs no per-segment work at all (see `logits`).
    """

    return_discount = 1.0  # the discount inside a segment's return

    def prepare(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        summed = summed_features(batch, self.return_discount)  # (B, 2, d)
        return {**batch, "summed_features": summed, "feature_difference": summed[:, 0] - summed[:, 1]}

    def segment_returns(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """sum_t c^t r(phi_t) over each segment's steps: (B, 2)."""
        if getattr(reward, "is_linear", False):
            # sum_t c^t (phi_t . w) = (sum_t c^t phi_t) . w: one reward evaluation per segment
            summed = batch.get("summed_features")
            return reward(summed if summed is not None else summed_features(batch, self.return_discount))
        L = batch["features"].shape[-2]
        weights = _step_mask(batch) * self.return_discount ** torch.arange(
            L, dtype=DTYPE, device=batch["features"].device
        )
        return (reward(batch["features"]) * weights).sum(-1)

    def segment_scores(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def logits(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """log-odds that the first segment is preferred: (B,)."""
        if getattr(reward, "is_linear", False) and "feature_difference" in batch:
            return self.linear_logits(reward, batch)
        scores = self.segment_scores(reward, batch)
        return scores[:, 0] - scores[:, 1]

    def linear_logits(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """The same logits for a linear reward from prepared pair-level terms (fewer, larger ops)."""
        return reward(batch["feature_difference"])

    def loss(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Cross-entropy over both orders of each pair, against (possibly 0.5 or soft) labels.

        The swapped pair has logit -l and label 1 - y, and BCE(-l, 1 - y) = BCE(l, y) term by
        term, so the mean over both orders is the one-order BCE: no doubled batch is needed.
        """
        return nn.functional.binary_cross_entropy_with_logits(self.logits(reward, batch), batch["labels"])


class PartialReturnModel(PreferenceModel):
    """Scores a segment by its partial return, the undiscounted sum of its rewards."""

    def segment_scores(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return self.segment_returns(reward, batch)


class RegretModel(PreferenceModel):
    """Scores a segment by minus its regret, with V* approximated over a policy set."""

    def __init__(self, policy_set: PolicySet, gamma: float, temperature: float = 0.001) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.gamma, self.temperature = float(gamma), float(temperature)
        self.return_discount = self.gamma
        # non-persistent: they come from the environment, not from training
        self.register_buffer(
            "occupancy", torch.as_tensor(policy_set.occupancy, dtype=DTYPE), persistent=False
        )
        self.register_buffer("basis", torch.as_tensor(policy_set.basis, dtype=DTYPE), persistent=False)

    def optimal_values(self, reward: nn.Module) -> Tensor:
        """Soft maximum over the policy set of V^pi(s): (S,)."""
        values = self.occupancy @ reward(self.basis)  # (K, S)
        return (torch.softmax(values / self.temperature, dim=0) * values).sum(0)

    def prepare(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        batch = super().prepare(batch)
        ends = torch.gather(batch["states"], -1, batch["lengths"][..., None])[..., 0]
        end_discounts = self.gamma ** batch["lengths"].to(DTYPE)
        ones = torch.ones_like(end_discounts)
        # the logit is linear in V*: -V*(s0_1) + g^k1 V*(end_1) + V*(s0_2) - g^k2 V*(end_2)
        value_index = torch.stack(
            [batch["states"][:, 0, 0], ends[:, 0], batch["states"][:, 1, 0], ends[:, 1]], -1
        )
        value_coef = torch.stack([-ones[:, 0], end_discounts[:, 0], ones[:, 1], -end_discounts[:, 1]], -1)
        return {
            **batch,
            "end_states": ends,
            "end_discounts": end_discounts,
            "value_index": value_index,
            "value_coef": value_coef,
        }

    def segment_scores(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        if "end_states" not in batch:
            batch = self.prepare(batch)
        v_star = self.optimal_values(reward)
        regret = v_star[batch["states"][..., 0]] - (
            self.segment_returns(reward, batch) + batch["end_discounts"] * v_star[batch["end_states"]]
        )
        return -regret

    def linear_logits(self, reward: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        index = batch["value_index"]
        # index_select: its backward is a plain scatter-add, several times cheaper than indexing's
        values = torch.index_select(self.optimal_values(reward), 0, index.reshape(-1)).reshape(index.shape)
        return reward(batch["feature_difference"]) + (batch["value_coef"] * values).sum(-1)
