"""Click and rating metrics of held-out (user, item) examples, overall and per user group.

For every split of `truth` (e.g. "test": the held-out rows with their click label and rating) and
every user group (e.g. "warm", "cold"), with keys "<split>[_<group>]/<metric>":

- auc: area under the ROC curve of the model's ranking score over all rows with a click label;
- user_auc: the mean over users (with both clicks and non-clicks) of each user's own AUC; the
  per-user values are kept for paired tests between models;
- logloss: mean binary cross-entropy of sigmoid(click logit) (models with a trained click head);
- rmse, mae: of the predicted rating over rows with a rating (models with a trained rating head).

Any recommender works: models with `predict_pairs` (the personality ranker) give their ranking
score (`rank_by`), click logits and ratings; any other gives its ranking score (`scorer`), so
AUC compares them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from recsys.data.interactions import InteractionData
from recsys.models.diagnostics import auc

METRICS = ("auc", "user_auc", "logloss", "rmse", "mae")


@dataclass
class PointwiseResult:
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(default_factory=dict)  # "<split>/user_auc" -> values
    users: dict[str, np.ndarray] = field(default_factory=dict)  # "<split>" -> users of per_user, ascending


@torch.no_grad()
def pair_scores(model, users: np.ndarray, items: np.ndarray, batch_size: int = 65_536) -> dict[str, np.ndarray]:
    """{"score": ranking scores[, "click": logits, "rating": predictions]} of the pairs (users[b], items[b]).

    "click" and "rating" are there only for heads the model trained (weight > 0)."""
    was_training = model.training
    model.eval()
    try:
        if hasattr(model, "predict_pairs"):
            hp = model.hparams
            heads = [name for name in ("click", "rating") if float(getattr(hp, f"{name}_weight", 1.0)) > 0]
            parts: dict[str, list[np.ndarray]] = {name: [] for name in heads}
            parts["score"] = []
            for start in range(0, len(users), batch_size):
                out = model.predict_pairs(torch.from_numpy(users[start:start + batch_size]),
                                          torch.from_numpy(items[start:start + batch_size]))
                out["score"] = out[getattr(hp, "rank_by", "click")]
                for name in parts:
                    parts[name].append(out[name].float().cpu().numpy())
            return {name: np.concatenate(v) if v else np.zeros(0, np.float32) for name, v in parts.items()}
        # Any other recommender: its ranking score of the pair, read from full rows user by user batch.
        scores = np.empty(len(users), dtype=np.float32)
        order = np.argsort(users, kind="stable")
        distinct, starts = np.unique(users[order], return_index=True)
        bounds = np.append(starts, len(users))
        step = max(1, batch_size // max(1, int(getattr(model.hparams, "n_items", 1))))
        for b in range(0, len(distinct), step):
            rows = model.scorer(distinct[b:b + step])
            rows = rows.float().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
            for r, u in enumerate(range(b, min(b + step, len(distinct)))):
                picked = order[bounds[u]:bounds[u + 1]]
                scores[picked] = rows[r, items[picked]]
        return {"score": scores}
    finally:
        model.train(was_training)


def _logloss(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    # log(1 + exp(-|x|)) + max(x, 0) - x * y: stable for large |x|.
    return float(np.mean(np.logaddexp(0.0, logits) - logits * labels))


def _user_auc(users: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(users, kind="stable")
    distinct, starts = np.unique(users[order], return_index=True)
    bounds = np.append(starts, len(users))
    kept, values = [], []
    for u, user in enumerate(distinct):
        rows = order[bounds[u]:bounds[u + 1]]
        value = auc(scores[rows], labels[rows] > 0)
        if np.isfinite(value):
            kept.append(user)
            values.append(value)
    return np.asarray(kept, dtype=np.int64), np.asarray(values, dtype=np.float64)


def _metrics_of(prefix: str, users: np.ndarray, out: dict[str, np.ndarray], labels: np.ndarray | None,
                ratings: np.ndarray | None, result: PointwiseResult) -> None:
    nan = float("nan")
    values = dict.fromkeys(METRICS, nan)
    if labels is not None:
        known = ~np.isnan(labels)
        values["auc"] = auc(out["score"][known], labels[known] > 0)
        kept, per_user = _user_auc(users[known], out["score"][known], labels[known])
        values["user_auc"] = float(per_user.mean()) if len(per_user) else nan
        result.per_user[f"{prefix}/user_auc"], result.users[prefix] = per_user, kept
        if "click" in out and known.any():
            values["logloss"] = _logloss(out["click"][known], labels[known])
    if ratings is not None and "rating" in out:
        known = ~np.isnan(ratings)
        if known.any():
            error = out["rating"][known].astype(np.float64) - ratings[known]
            values["rmse"], values["mae"] = float(np.sqrt(np.mean(error**2))), float(np.mean(np.abs(error)))
    result.metrics.update({f"{prefix}/{name}": float(v) for name, v in values.items()})


def pointwise_metrics(model, truth: Mapping[str, InteractionData],
                      groups: Mapping[str, np.ndarray] | None = None) -> PointwiseResult:
    """Metrics of `model` on each split of `truth`, overall and for each group (a boolean mask over users).

    A split's click labels are its `label` (rows without one: every row is a click, so AUC is
    undefined); its ratings are `rating` (NaN where a row has none).
    """
    result = PointwiseResult(metrics={})
    for split, data in truth.items():
        if not len(data):
            continue
        out = pair_scores(model, data.user, data.item)
        labels = data.label.astype(np.float64) if data.label is not None else None
        ratings = data.rating.astype(np.float64) if data.rating is not None else None
        _metrics_of(split, data.user, out, labels, ratings, result)
        for group, mask in (groups or {}).items():
            rows = np.asarray(mask, dtype=bool)[data.user]
            if rows.any():
                picked = {name: values[rows] for name, values in out.items()}
                _metrics_of(f"{split}_{group}", data.user[rows], picked, None if labels is None else labels[rows],
                            None if ratings is None else ratings[rows], result)
    return result
