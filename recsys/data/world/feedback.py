"""Exposure and feedback: what users were shown, what they clicked, when, and how they rated it.

Per user, counts are planned first (heavy-tailed activity; a per-user false-positive rate), then
each batch of users draws its exposures from its utility matrix:

- exposed liked items: drawn without replacement from the user's liked set, weighted by
  popularity ** popularity_bias (Gumbel top-k); a uniform share `missing_positive_rate` of
  them is never observed (the missing positives);
- exposed disliked items: drawn the same way from the rest of the catalog; `n_fp` of them,
  favouring high-`lure` items, are clicked anyway (the false positives), the others are
  impressions without a click;
- observed positives = the observed liked items + the false positives, so the truth of every
  observed row is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recsys.data.world.catalog import Items
from recsys.data.world.config import WorldConfig
from recsys.data.world.utility import UtilityModel

SECONDS_PER_DAY = 86_400
# Moves liked items ahead of all others in one sort; far above any popularity + Gumbel key.
_LIKED_FIRST = 1e6


@dataclass(frozen=True)
class ActivityPlan:
    """Per-user counts, fixed before any item is drawn."""

    true_positives: np.ndarray  # observed liked items
    false_positives: np.ndarray  # observed disliked items
    missed: np.ndarray  # exposed liked items never observed
    unclicked: np.ndarray  # exposed disliked items not clicked


@dataclass(frozen=True)
class Feedback:
    # observed positives, sorted by (user, timestamp)
    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    rating: np.ndarray  # float32, 1..5
    is_false_positive: np.ndarray  # bool
    utility: np.ndarray  # float64, true utility of each observed row
    # missing positives: liked and exposed but never observed
    missed_user: np.ndarray
    missed_item: np.ndarray
    missed_timestamp: np.ndarray
    clicks: pd.DataFrame  # every impression: user, item, timestamp, click (0/1)


def plan_activity(config: WorldConfig) -> ActivityPlan:
    """Per-user counts whose mean observed total hits `interactions_per_user` and whose false
    positives make up `false_positive_rate` of all observed rows.

    Given fixed random draws every count is a non-decreasing function of one activity scale
    (false positives by stochastic rounding, not a binomial), so bisection on that scale hits the
    mean even after users are capped by how many items they like. Capping trims the liked part
    of careful users' feedback, which would push the realized false-positive share up, so the
    per-user rates are rescaled until the realized share matches.
    """
    rng = config.rng("activity")
    n = config.n_users
    raw = np.exp(config.activity_sigma * rng.standard_normal(n))
    spread = np.ones(n)
    cv = config.false_positive_user_cv
    if cv > 0:
        spread = rng.gamma(1 / cv**2, cv**2, size=n)  # mean 1: some users click more carelessly than others
    fp_draw, missed_draw, unclicked_draw = rng.random(n), rng.random(n), rng.random(n)
    disliked_pool = config.n_items - config.liked_per_user
    target_fp, m = config.false_positive_rate, config.missing_positive_rate

    def counts(scale: float, fp_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        observed = np.clip(np.rint(scale * raw), config.min_interactions, config.max_interactions)
        false_pos = np.minimum(np.floor(observed * fp_rate + fp_draw), disliked_pool)
        true_pos = np.minimum(observed - false_pos, config.max_true_positives)
        return true_pos.astype(np.int64), false_pos.astype(np.int64)

    def fit_scale(fp_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def mean(scale: float) -> float:
            return sum(c.mean() for c in counts(scale, fp_rate))

        lo, hi = 0.0, 1.0
        while mean(hi) < config.interactions_per_user and hi < 1e12:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mean(mid) < config.interactions_per_user else (lo, mid)
        return counts(hi, fp_rate)

    factor = 1.0
    for _ in range(8):
        fp_rate = np.minimum(target_fp * factor * spread, 0.95)
        true_pos, false_pos = fit_scale(fp_rate)
        realized = false_pos.sum() / max(1, true_pos.sum() + false_pos.sum())
        if target_fp == 0 or abs(realized - target_fp) < 0.002 * target_fp:
            break
        factor *= target_fp / max(realized, 1e-9)

    missed = np.floor(true_pos * (m / (1 - m)) + missed_draw).astype(np.int64)
    missed = np.minimum(missed, config.liked_per_user - true_pos)
    unclicked = np.floor((true_pos + false_pos) * config.impressions_per_interaction + unclicked_draw)
    unclicked = np.minimum(unclicked.astype(np.int64), disliked_pool - false_pos)
    return ActivityPlan(true_pos, false_pos, missed, unclicked)


def simulate_feedback(config: WorldConfig, model: UtilityModel, items: Items, progress: bool = False) -> Feedback:
    plan = plan_activity(config)
    exposure_key = config.popularity_bias * items.log_popularity
    liked_count = config.liked_per_user
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("tp_u", "tp_i", "tp_v", "fp_u", "fp_i", "fp_v",
                                                          "miss_u", "miss_i", "skip_u", "skip_i")}
    step = model.users_per_batch()
    n_batches = -(-config.n_users // step)
    for batch, (rows, utility) in enumerate(tqdm(model.batches(), total=n_batches, disable=not progress,
                                                 desc="world: exposure", unit="batch")):
        rng = config.rng("exposure", batch)
        liked = utility > model.like_threshold[rows, None]
        if not (liked.sum(axis=1) == liked_count).all():  # thresholds sit between two distinct utilities
            raise RuntimeError("world: a user's like count differs from liked_per_user (tied utilities)")
        keys = exposure_key + rng.gumbel(size=utility.shape)
        # One sort ranks each user's liked items first, then the rest, each group by exposure key.
        order = np.argsort(np.where(liked, -keys - _LIKED_FIRST, -keys), axis=1)

        tp, missed = plan.true_positives[rows], plan.missed[rows]
        exposed_liked = order[:, :int((tp + missed).max(initial=0))]
        valid = _first_columns(exposed_liked.shape, tp + missed)
        # Which exposed liked items go unobserved: a uniform choice among them.
        is_missed = valid & (_ranks(np.where(valid, rng.random(valid.shape), 2.0)) < missed[:, None])
        observed_liked = valid & ~is_missed

        fp, unclicked = plan.false_positives[rows], plan.unclicked[rows]
        exposed_other = order[:, liked_count:liked_count + int((fp + unclicked).max(initial=0))]
        valid = _first_columns(exposed_other.shape, fp + unclicked)
        click_key = config.false_positive_lure * items.lure[exposed_other] + rng.gumbel(size=valid.shape)
        is_fp = valid & (_ranks(np.where(valid, -click_key, np.inf)) < fp[:, None])

        users = np.broadcast_to(rows[:, None], order.shape)
        for prefix, mask, chosen in (("tp", observed_liked, exposed_liked), ("fp", is_fp, exposed_other)):
            parts[f"{prefix}_u"].append(users[:, :chosen.shape[1]][mask])
            parts[f"{prefix}_i"].append(chosen[mask])
            parts[f"{prefix}_v"].append(np.take_along_axis(utility, chosen, axis=1)[mask])
        parts["miss_u"].append(users[:, :exposed_liked.shape[1]][is_missed])
        parts["miss_i"].append(exposed_liked[is_missed])
        unclicked_mask = valid & ~is_fp
        parts["skip_u"].append(users[:, :exposed_other.shape[1]][unclicked_mask])
        parts["skip_i"].append(exposed_other[unclicked_mask])

    cat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    user = np.concatenate([cat["tp_u"], cat["fp_u"]]).astype(np.int64)
    item = np.concatenate([cat["tp_i"], cat["fp_i"]]).astype(np.int64)
    utility = np.concatenate([cat["tp_v"], cat["fp_v"]]).astype(np.float64)
    is_fp = np.concatenate([np.zeros(len(cat["tp_u"]), bool), np.ones(len(cat["fp_u"]), bool)])

    timeline = _Timeline(config)
    order, timestamp = timeline.observed(user, items.category[item])
    user, item, utility, is_fp = user[order], item[order], utility[order], is_fp[order]
    rating = _ratings(config, model, user, utility)

    missed_u, missed_i = cat["miss_u"].astype(np.int64), cat["miss_i"].astype(np.int64)
    missed_t = timeline.random_times(missed_u, "missed")
    skip_u, skip_i = cat["skip_u"].astype(np.int64), cat["skip_i"].astype(np.int64)
    clicks = _clicks(user, item, timestamp, missed_u, missed_i, missed_t,
                     skip_u, skip_i, timeline.random_times(skip_u, "unclicked"))
    return Feedback(user=user, item=item, timestamp=timestamp, rating=rating, is_false_positive=is_fp,
                    utility=utility, missed_user=missed_u, missed_item=missed_i, missed_timestamp=missed_t,
                    clicks=clicks)


def _first_columns(shape: tuple[int, int], counts: np.ndarray) -> np.ndarray:
    """Mask of the first counts[r] columns of each row r."""
    return np.arange(shape[1])[None, :] < counts[:, None]


def _ranks(keys: np.ndarray) -> np.ndarray:
    """Rank (0 = smallest) of each entry within its row."""
    order = np.argsort(keys, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(keys.shape[1])[None, :].repeat(len(keys), axis=0), axis=1)
    return ranks


class _Timeline:
    """Each user is active in a window of the time span; their items cluster by category in sessions."""

    def __init__(self, config: WorldConfig):
        rng = config.rng("time")
        self.config = config
        span = config.time_span_days * SECONDS_PER_DAY
        self.length = span * (0.1 + 0.9 * rng.beta(1.5, 1.5, size=config.n_users))
        self.start = config.time_start + rng.random(config.n_users) * (span - self.length)
        self.session = rng.random((config.n_users, config.n_categories))

    def observed(self, user: np.ndarray, category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A row order that sorts by (user, time), and the timestamps in that order.

        Items are ordered within a user by a key mixing the user's session time for the item's
        category with noise (`session_coherence` sets the mix); sorted uniform times in the user's
        window are then handed out in that order.
        """
        rng = self.config.rng("time-observed")
        c = self.config.session_coherence
        key = c * self.session[user, category] + (1 - c) * rng.random(len(user))
        order = np.lexsort((key, user))
        raw = self.start[user] + self.length[user] * rng.random(len(user))
        times = raw[np.lexsort((raw, user))]  # same user blocks as `order`, times ascending within each
        return order, np.floor(times).astype(np.int64)

    def random_times(self, user: np.ndarray, stage: str) -> np.ndarray:
        rng = self.config.rng(f"time-{stage}")
        return np.floor(self.start[user] + self.length[user] * rng.random(len(user))).astype(np.int64)


def _ratings(config: WorldConfig, model: UtilityModel, user: np.ndarray, utility: np.ndarray) -> np.ndarray:
    """Stars from how far the utility lies above or below the user's like threshold.

    Before noise a liked item gets 4 or 5 stars and a disliked one 3 or fewer, so "rating >= 4"
    recovers the likes up to `rating_noise`. Rounds half up (np.rint would round 4.5 to 4).
    """
    rng = config.rng("ratings")
    z = (utility - model.like_threshold[user]) / np.maximum(model.user_std[user], 1e-9)
    stars = 3.5 + config.rating_scale * z + config.rating_noise * rng.standard_normal(len(user))
    return np.clip(np.floor(stars + 0.5), 1, 5).astype(np.float32)


def _clicks(user, item, timestamp, missed_u, missed_i, missed_t, skip_u, skip_i, skip_t) -> pd.DataFrame:
    users = np.concatenate([user, missed_u, skip_u])
    times = np.concatenate([timestamp, missed_t, skip_t])
    order = np.lexsort((times, users))
    return pd.DataFrame({
        "user": users[order],
        "item": np.concatenate([item, missed_i, skip_i])[order],
        "timestamp": times[order],
        "click": np.concatenate([np.ones(len(user), np.int8), np.zeros(len(missed_u) + len(skip_u), np.int8)])[order],
    })
