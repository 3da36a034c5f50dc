"""`PersonalityDataModule`: examples with clicks, ratings and profiles, split into warm and cold users.

It extends `InteractionDataModule` (every data option stays a CLI flag) with what a rating and
click-through ranker needs:

- examples: every (user, item) row, positive or not, with a click label and a rating (NaN where
  the data has none). On the preference world (`world_examples="clicks"`) they are the impression
  log: every item shown, clicked (1) or not (0), with the rating of the clicked ones; files give
  their rows, and where they have ratings but no click label, click = rating >= `click_threshold`
  (default 4: a 4- or 5-star item is one the user would click).
- profiles: the data's own, replaced by a user table when `profiles_path` is given
  (`recsys.data.profiles`); on the world, `world_tastes` adds each user's stated preferences
  as taste tokens (`tastes` column) for the ranker's multi-hot field.
- the split: a seeded share `cold_user_share` of the users are cold: all their rows are held
  out (each cold user's rows go to validation or test, in proportion to the ratios). The other
  users' rows are split per user by `ratios` (`recsys.data.splits.random_split`). Already-split
  files (`train_path`) keep their split; users without training rows are the cold ones.

Models with `batch_kind = "pointwise"` get shuffled batches of examples {users, items, click,
rating}, plus `sampled_negatives` unseen items per training click as click-0 examples (drawn anew
each epoch; `negatives`/`sampler` of the parent do the same for triples); any other model (matrix factorization as the reference) gets the parent's triples over
the same training split. Evaluation truth gains "<split>_warm" and "<split>_cold" views, and
`pointwise_truth` / `user_groups` feed the click and rating metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, IterableDataset

from recsys.data.datamodule import InteractionDataModule
from recsys.data.interactions import InteractionData, Split
from recsys.data.ranks import RankShare
from recsys.data.sampling import NegativeSampler
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

WorldExamples = Literal["clicks", "ratings"]
GROUPS = ("warm", "cold")


class ExampleBatches(IterableDataset):
    """Batch b of epoch e: rows perm_e[b*B:(b+1)*B] of epoch e's examples, perm_e drawn from (seed, e)
    (on N processes, rank r's slice of global batch b; see `recsys.data.ranks.RankShare`).

    Epoch e's examples are the training rows plus `negatives` sampled unseen items (click 0, no
    rating) per training click, drawn from (seed, e): the impression log alone never shows the
    model the items nobody was shown, which full ranking over the catalog must push down. On N
    processes every rank draws the epoch's examples alike (one vectorized draw per epoch), so the
    ranks' slices partition the same epoch.
    """

    def __init__(self, examples: dict[str, np.ndarray], sampler: NegativeSampler, negatives: int, batch_size: int,
                 seed: int, epoch, share_of: Callable[[int], RankShare] | None = None):
        self.examples, self.sampler, self.negatives = examples, sampler, negatives
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self.clicks = np.flatnonzero(examples["click"] > 0)
        self.n = len(examples["users"]) + negatives * len(self.clicks)
        # On N processes rank r takes its slice of every global batch (`recsys.data.ranks.RankShare`).
        self.share = share_of(self.n) if share_of is not None else RankShare(self.n, batch_size)
        self._cache: tuple[int, dict[str, np.ndarray], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.share)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self[index] for index in range(len(self)))

    def _epoch_examples(self, epoch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if self._cache is None or self._cache[0] != epoch:
            examples = self.examples
            if self.negatives:
                users = self.examples["users"][self.clicks]
                items = self.sampler.sample(users, self.negatives, np.random.default_rng([self.seed, epoch, 3]))
                extra = {"users": np.repeat(users, self.negatives), "items": items.reshape(-1),
                         "click": np.zeros(items.size, dtype=np.float32),
                         "rating": np.full(items.size, np.nan, dtype=np.float32)}
                examples = {name: np.concatenate([values, extra[name].astype(values.dtype)])
                            for name, values in examples.items()}
            order = np.random.default_rng([self.seed, epoch, 2]).permutation(self.n)
            self._cache = (epoch, examples, order)
        return self._cache[1], self._cache[2]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        examples, order = self._epoch_examples(self.epoch())
        rows = self.share.rows(order, index)
        return {name: torch.from_numpy(values[rows]) for name, values in examples.items()}


def cold_user_split(data: InteractionData, cold_user_share: float, ratios=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Hold out every row of a seeded share of the users (cold); split the rest per user at random."""
    from recsys.data.splits import _check_ratios, random_split

    _, r_valid, r_test = _check_ratios(ratios)
    if not 0.0 <= cold_user_share < 1.0:
        raise UserInputError(f"data.cold_user_share must be in [0, 1), got {cold_user_share}")
    rng = np.random.default_rng([seed, 17])
    users = np.unique(data.user)
    cold = rng.choice(users, size=int(round(cold_user_share * len(users))), replace=False)
    to_valid = rng.random(len(cold)) < (r_valid / (r_valid + r_test) if r_valid + r_test > 0 else 0.0)
    part_of_user = np.zeros(data.n_users, dtype=np.int64)  # 0 train (warm), 1 valid, 2 test
    part_of_user[cold] = np.where(to_valid, 1, 2)
    part = part_of_user[data.user]
    warm_rows = np.flatnonzero(part == 0)
    # random_split returns row subsets; carrying each row's position in the timestamp column tells
    # which rows went where (a random split assigns pairs by a seeded shuffle, not by time).
    tagged = replace(data.subset(warm_rows), timestamp=warm_rows)
    warm = random_split(tagged, ratios, seed=seed)
    for index, piece in enumerate((warm.train, warm.valid, warm.test)):
        part[piece.timestamp] = index
    split = Split(*(data.subset(part == p) for p in range(3)))
    log.info("cold-user split (seed %d): %d of %d users cold (%d valid, %d test); %s", seed, len(cold), len(users),
             int(to_valid.sum()), int((~to_valid).sum()), split.describe())
    return split


class PersonalityDataModule(InteractionDataModule):
    """InteractionDataModule with click/rating examples, profiles and a warm/cold-user split.

    Args (beyond InteractionDataModule's):
        cold_user_share: share of users whose rows are all held out (the cold-start users).
        click_threshold: click = rating >= this, for data with ratings and no click label.
        profiles_path: a user table (CSV/Parquet with Big-Five columns) to use as the profiles.
        profiles_id_column: its user id column (default: user, user_id, userId, ...).
        world_examples: on the world, "clicks" (the impression log) or "ratings" (observed rows).
        world_tastes: on the world, add each user's stated preferences as taste tokens.
        sampled_negatives: unseen items per training click added as click-0 examples each epoch.
    """

    def __init__(self, *args, cold_user_share: float = 0.2, click_threshold: float = 4.0,
                 profiles_path: str | None = None, profiles_id_column: str | None = None,
                 world_examples: WorldExamples = "clicks", world_tastes: bool = False, sampled_negatives: int = 1,
                 **kwargs):
        if world_examples not in ("clicks", "ratings"):
            raise UserInputError(f"data.world_examples must be 'clicks' or 'ratings', got {world_examples!r}")
        if not 0.0 <= cold_user_share < 1.0:
            raise UserInputError(f"data.cold_user_share must be in [0, 1), got {cold_user_share}")
        if sampled_negatives < 0:
            raise UserInputError(f"data.sampled_negatives must be >= 0, got {sampled_negatives}")
        self.sampled_negatives = int(sampled_negatives)
        self.cold_user_share, self.click_threshold = float(cold_user_share), float(click_threshold)
        self.profiles_path, self.profiles_id_column = profiles_path, profiles_id_column
        self.world_examples, self.world_tastes = world_examples, bool(world_tastes)
        super().__init__(*args, **kwargs)  # loads and splits (calls _load_data)

    # loading ----------------------------------------------------------------------------------
    def _load_data(self) -> None:
        hp = self.hparams
        if hp.split != "random":
            raise UserInputError(f"data.split {hp.split!r}: the personality DataModule splits warm users at random "
                                 f"(per user) and holds out cold users; use split: random")
        if hp.train_path is not None:
            from recsys.data.formats import load_presplit

            split = load_presplit(hp.train_path, hp.valid_path, hp.test_path, format=hp.format, columns=hp.columns,
                                  sep=hp.sep)
            self.split = Split(*(self._examples_from(self._filter(p, kcore=0)) for p in (split.train, split.valid, split.test)))
        else:
            data = self._examples_from(self._filter(self._observed()))
            self.split = cold_user_split(data, self.cold_user_share, self.ratios, self.seed)
        if self.world is not None:
            self.clean = {"valid": self._clean(self.split.valid), "test": self._clean(self.split.test)}
        self._index_training()

    def _observed(self) -> InteractionData:
        hp = self.hparams
        if not self.uses_world:
            from recsys.data.formats import load

            return load(hp.path, format=hp.format, columns=hp.columns, sep=hp.sep)
        from recsys.data.world import generate_world

        self.world = generate_world(self.world_config())
        observed = self.world.observed
        if self.world_tastes:
            observed = replace(observed, profiles=replace(observed.profiles, demographics=_with_world_tastes(
                observed.profiles.demographics, self.world.preferences)))
        if self.world_examples == "ratings":
            return observed
        clicks = self.world.clicks
        # The rating of a clicked row is the observed row's; impressions without a click have none.
        key = observed.user * observed.n_items + observed.item
        rating_of = pd.Series(observed.rating, index=key)
        rating_of = rating_of[~rating_of.index.duplicated()]
        rows = clicks["user"].to_numpy() * observed.n_items + clicks["item"].to_numpy()
        rating = rating_of.reindex(rows).to_numpy(dtype=np.float32)
        return InteractionData(user=clicks["user"].to_numpy(), item=clicks["item"].to_numpy(),
                               timestamp=clicks["timestamp"].to_numpy(), vocab=observed.vocab, rating=rating,
                               label=clicks["click"].to_numpy(dtype=np.float32), catalog=observed.catalog,
                               profiles=observed.profiles)

    def _examples_from(self, data: InteractionData) -> InteractionData:
        """Profiles from `profiles_path` when given; click labels from the rating threshold when missing."""
        if self.profiles_path is not None:
            from recsys.data.profiles import read_profiles, with_profiles

            data = with_profiles(data, read_profiles(self.profiles_path, data.vocab, self.profiles_id_column))
        if data.label is None and data.rating is not None:
            from recsys.data.filters import binarize

            data = binarize(data, self.click_threshold, below="negative").data
            log.info("click = rating >= %g: %d of %d rows are clicks", self.click_threshold, int(data.label.sum()),
                     len(data))
        return data

    def _clean(self, part: InteractionData) -> InteractionData:
        """The rows of a world split labelled by the truth: positive where the user truly likes the item."""
        return replace(part, label=self.world.truly_liked(part.user, part.item).astype(np.float32))

    # users -----------------------------------------------------------------------------------
    def user_groups(self) -> dict[str, np.ndarray]:
        """{"warm": users with training rows, "cold": users with held-out rows and none in training}."""
        train = np.bincount(self.split.train.user, minlength=self.n_users) > 0
        held_out = np.zeros(self.n_users, dtype=bool)
        held_out[self.split.valid.user] = True
        held_out[self.split.test.user] = True
        return {"warm": train, "cold": held_out & ~train}

    def evaluation_inputs(self, stage: str) -> tuple[dict[str, InteractionData], list[InteractionData]]:
        """The parent's truth plus its warm and cold views ("test_warm", "clean_cold", ...)."""
        truth, exclude = super().evaluation_inputs(stage)
        groups = self.user_groups()
        for name, data in list(truth.items()):
            for group in GROUPS:
                view = data.subset(groups[group][data.user])
                if len(view.positives()):  # the evaluator refuses a split without a relevant item
                    truth[f"{name}_{group}"] = view
        return truth, exclude

    def pointwise_truth(self, stage: str) -> dict[str, InteractionData]:
        """The held-out examples (clicks and non-clicks, ratings) of "valid" or "test"."""
        if stage not in ("valid", "test"):
            raise ValueError(f"unknown evaluation stage {stage!r}")
        return {stage: getattr(self.split, stage)}

    # loaders ---------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        module = self.trainer.lightning_module if self.trainer is not None else None
        if getattr(module, "batch_kind", None) != "pointwise":
            return super().train_dataloader()
        train = self.split.train
        nan = np.full(len(train), np.nan, dtype=np.float32)
        examples = {"users": train.user, "items": train.item,
                    "click": train.label if train.label is not None else np.ones(len(train), dtype=np.float32),
                    "rating": train.rating if train.rating is not None else nan}
        # Sampled negatives avoid every item the user has a training row for (clicked or only shown).
        seen = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train.user, train.item)),
                             shape=(train.n_users, train.n_items))
        sampler = NegativeSampler(seen, self.sampler_kind, self.popularity_exponent)
        return DataLoader(ExampleBatches(examples, sampler, self.sampled_negatives, self.batch_size,
                                         self.sample_seed, self._current_epoch, self.rank_share),
                          batch_size=None, shuffle=False)

    def checkpoint_metadata(self) -> dict[str, Any]:
        meta = super().checkpoint_metadata()
        meta["cold_users"] = np.flatnonzero(self.user_groups()["cold"]).tolist()
        return meta


def _with_world_tastes(demographics: pd.DataFrame, preferences: pd.DataFrame) -> pd.DataFrame:
    """Stated preferences as taste tokens: "like:aspect=<key>+", "dislike:category=<name>", ..."""
    pole = np.where(preferences["value"].to_numpy() > 0, "+", "-")
    token = np.where(preferences["kind"].to_numpy() == "aspect",
                     preferences["polarity"] + ":aspect=" + preferences["aspect"].fillna("").astype(str) + pole,
                     preferences["polarity"] + ":category=" + preferences["category"].astype(str))
    joined = pd.Series(token).groupby(preferences["user"].to_numpy()).agg("|".join)
    out = demographics.copy()
    out["tastes"] = joined.reindex(np.arange(len(demographics))).fillna("").to_numpy()
    return out
