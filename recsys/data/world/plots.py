"""One PNG that shows what a generated world looks like: activity, popularity, ratings, time.

Drawn with matplotlib's object API (`Figure`), so no display or pyplot backend is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from recsys.data.world.preference_world import PreferenceWorld

SECONDS_PER_DAY = 86_400


def plot_world(world: PreferenceWorld, path) -> Path:
    o = world.observed
    figure = Figure(figsize=(11, 8), layout="constrained")
    (activity, popularity), (ratings, timeline) = figure.subplots(2, 2)

    counts = np.sort(o.user_counts())[::-1]
    activity.loglog(np.arange(1, len(counts) + 1), np.maximum(counts, 1), drawstyle="steps-post")
    activity.set(title=f"user activity (mean {counts.mean():.1f}, median {np.median(counts):.0f})",
                 xlabel="user rank", ylabel="observed interactions")

    shown = np.sort(np.bincount(world.clicks["item"].to_numpy(), minlength=world.n_items))[::-1]
    clicked = np.sort(o.item_counts())[::-1]
    ranks = np.arange(1, world.n_items + 1)
    popularity.loglog(ranks, np.maximum(shown, 1), label="impressions")
    popularity.loglog(ranks, np.maximum(clicked, 1), label="observed positives")
    popularity.set(title=f"item popularity (popularity_bias {world.config.popularity_bias})",
                   xlabel="item rank", ylabel="count")
    popularity.legend()

    stars = np.arange(1, 6)
    fp = world.is_false_positive
    width = 0.4
    ratings.bar(stars - width / 2, np.bincount(o.rating[~fp].astype(int), minlength=6)[1:], width,
                label=f"true positives ({(~fp).sum():,})")
    ratings.bar(stars + width / 2, np.bincount(o.rating[fp].astype(int), minlength=6)[1:], width,
                label=f"false positives ({fp.sum():,}, {fp.mean():.1%})")
    ratings.set(title="ratings of observed positives", xlabel="stars", ylabel="rows", xticks=stars)
    ratings.legend()

    days = (o.timestamp - world.config.time_start) / SECONDS_PER_DAY
    timeline.hist(days, bins=60)
    timeline.set(title="observed interactions over time", xlabel=f"days since {world.config.time_start} (Unix s)",
                 ylabel="rows")

    figure.suptitle(f"preference world, seed {world.config.seed}: {o.n_users:,} users x {o.n_items:,} items, "
                    f"{len(o):,} observed positives")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
