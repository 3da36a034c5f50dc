"""`InteractionDataModule`: data for implicit-feedback recommenders, every option a CLI flag.

Data come from one of three places, in this order:
- `train_path` (+ `valid_path`, `test_path`): files already split;
- `path`: one file or directory in any supported format, filtered and split here;
- neither: the preference world (ground truth kept, so evaluation also runs on clean labels and on
  the hidden likes, see `evaluation_inputs`).

`hide_positives` withholds a seeded share of each user's training pairs from training (any data
source) and scores them as their own view, "withheld": how well a model finds positives that were
turned into unobserved ones, the noise NBPO models, on data whose full truth is unknown.

Training batches are triples (user, positive, n sampled negatives), shuffled per epoch from
(seed, epoch) and sampled from (seed, epoch, batch), so runs repeat exactly. On N processes
(`--trainer.strategy ddp`) rank r takes its own slice of every global batch and draws its own
negatives (`recsys.data.ranks.RankShare`): no two ranks train on the same rows, and
`batch_size` is per process, as everywhere in Lightning. The batches are an iterable dataset so
that Lightning does not add a DistributedSampler on top. A model whose compiled kernel samples
by itself (`training_batches == "positives"`) gets all training positives as one batch per epoch
instead (on N processes, those of the users u with u mod N == r); a model that learns nothing
(popularity) gets one empty batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from recsys.data.interactions import InteractionData, Split
from recsys.data.ranks import RankShare, trainer_rank_and_world
from recsys.data.sampling import NegativeSampler
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

SplitKind = Literal["random", "loo", "temporal"]


def _union(first: InteractionData, second: InteractionData) -> InteractionData:
    """The rows of both (same vocabulary), without ratings or labels: every row a positive."""
    return InteractionData(user=np.concatenate([first.user, second.user]),
                           item=np.concatenate([first.item, second.item]),
                           timestamp=np.concatenate([first.timestamp, second.timestamp]), vocab=first.vocab)


def _with_contrast(users: np.ndarray, items: np.ndarray, forbidden: sp.csr_matrix, seed: int,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs (users, items) as targets plus, per pair, a uniform item of the same user outside `forbidden`."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, forbidden.shape[1], size=len(users))
    for _ in range(1000):  # rejection: redraw the draws that hit a forbidden pair
        hit = np.asarray(forbidden[users, drawn]).ravel() > 0
        if not hit.any():
            break
        drawn[hit] = rng.integers(0, forbidden.shape[1], size=int(hit.sum()))
    else:
        raise UserInputError("flip contrast: some user has no pair left that is neither observed nor liked")
    is_target = np.concatenate([np.ones(len(users), bool), np.zeros(len(users), bool)])
    return np.concatenate([users, users]), np.concatenate([items, drawn]), is_target


class TripleBatches(IterableDataset):
    """Rank's batch b of epoch e: its slice of global batch b of perm_e, n negatives each from (seed, e, b, rank).

    `share` says which rows of each global batch this rank takes (one process: all of them).
    Also indexable: `batches[b]` is the rank's batch b of the current epoch.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, sampler: NegativeSampler, batch_size: int,
                 negatives: int, seed: int, epoch: Callable[[], int], share: RankShare | None = None):
        self.users, self.items = users, items
        self.sampler, self.batch_size, self.negatives, self.seed = sampler, batch_size, negatives, seed
        self.epoch = epoch
        self.share = share or RankShare(len(users), batch_size)
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.share)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.users)))
        return self._order[1]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch = self.epoch()
        rows = self.share.rows(self._permutation(epoch), index)
        users = self.users[rows]
        stream = np.random.default_rng([self.seed, epoch, self.share.seed_index(index), 1])
        negatives = self.sampler.sample(users, self.negatives, stream)
        return {"users": torch.from_numpy(users), "positives": torch.from_numpy(self.items[rows]),
                "negatives": torch.from_numpy(negatives)}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self[index] for index in range(len(self)))


class _Single(Dataset):
    """A dataset of exactly one item (a whole-data batch)."""

    def __init__(self, item: Any):
        self.item = item

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Any:
        return self.item


class InteractionDataModule(pl.LightningDataModule):
    """Loads, filters and splits interactions, samples negatives, and hands out evaluation truth.

    Args:
        path: a data file or directory (format chosen by `format`); none: the preference world.
        format: "auto" or a loader name (movielens, recbole, amazon, table, native, ...).
        columns: mapping canonical column -> file column (user, item, timestamp, rating, label).
        sep: field separator of delimited files (None: guess).
        train_path, valid_path, test_path: already-split files (used instead of `path` and `split`).
        split: "random" (per-user ratios), "loo" (leave-one-out by time) or "temporal" (global).
        ratios: train/valid/test shares for "random" and "temporal".
        rating_threshold: keep rows with rating >= this as positives (None: every row).
        kcore: iterative k-core on users and items (0: off).
        dedup: policy for repeated (user, item) rows (see recsys.data.filters); None keeps every row.
        seed: seed of the split, the epoch shuffles and the negative draws.
        sample_seed: seed of the epoch shuffles and negative draws alone (None: `seed`); `recsys fit
            --seeds` and `recsys compare` vary it per run while `seed` keeps the split fixed.
        batch_size: training positives per batch.
        negatives: sampled negatives per positive (>= 1).
        sampler: "uniform" or "popularity" negatives; popularity_exponent damps popularity.
        world_preset, world_seed, world_users, world_items, false_positive_rate,
        missing_positive_rate, world_options: the preference world used when no path is given
            (world_options: any further WorldConfig field -> value).
        hide_positives: share of each user's training pairs withheld from training (0: none), chosen
            per user with the split's rule (`random_split`, ratios (1 - share, 0, share), seed
            `hide_seed`); they are scored as the "withheld" view of the test stage.
        hide_seed: seed of that choice (None: `seed`).
        eval_users_per_batch: users per batch of `predict`.
    """

    def __init__(self, path: str | None = None, format: str = "auto", columns: dict[str, str] | None = None,
                 sep: str | None = None, train_path: str | None = None, valid_path: str | None = None,
                 test_path: str | None = None, split: SplitKind = "random",
                 ratios: list[float] = (0.8, 0.1, 0.1), rating_threshold: float | None = None, kcore: int = 0,
                 dedup: str | None = None, seed: int = 0, batch_size: int = 4096, negatives: int = 1,
                 sampler: Literal["uniform", "popularity"] = "uniform", popularity_exponent: float = 0.75,
                 world_preset: str = "small", world_seed: int | None = None, world_users: int | None = None,
                 world_items: int | None = None, false_positive_rate: float | None = None,
                 missing_positive_rate: float | None = None, world_options: dict[str, Any] | None = None,
                 hide_positives: float = 0.0, hide_seed: int | None = None, eval_users_per_batch: int = 1024,
                 sample_seed: int | None = None):
        super().__init__()
        if negatives < 1:
            raise UserInputError(f"data.negatives (negatives per positive) must be >= 1, got {negatives}")
        if batch_size < 1 or eval_users_per_batch < 1:
            raise UserInputError("data.batch_size and data.eval_users_per_batch must be >= 1")
        if split not in ("random", "loo", "temporal"):
            raise UserInputError(f"data.split must be random, loo or temporal, got {split!r}")
        if sampler not in ("uniform", "popularity"):
            raise UserInputError(f"data.sampler must be 'uniform' or 'popularity', got {sampler!r}")
        if not 0.0 <= hide_positives < 1.0:
            raise UserInputError(f"data.hide_positives (share of training pairs withheld) must be in [0, 1), "
                                 f"got {hide_positives}")
        if path is None and train_path is None and (format != "auto" or columns or sep):
            raise UserInputError("data.format/data.columns/data.sep are set but no data.path (or data.train_path) "
                                 "names a file; without one the preference world is used")
        if train_path is None and (valid_path or test_path):
            raise UserInputError("data.valid_path/data.test_path need data.train_path")
        for name, value in (("path", path), ("train_path", train_path), ("valid_path", valid_path),
                            ("test_path", test_path)):
            if value is not None and not Path(value).exists():
                raise UserInputError(f"data.{name}: {value} does not exist")
        self.save_hyperparameters()
        self.path, self.format, self.columns, self.sep = path, format, columns, sep
        self.split_kind, self.ratios = split, tuple(float(r) for r in ratios)
        self.seed, self.batch_size, self.negatives = int(seed), int(batch_size), int(negatives)
        self.sample_seed = self.seed if sample_seed is None else int(sample_seed)  # compare varies it per run
        self.sampler_kind, self.popularity_exponent = sampler, popularity_exponent
        self.world = None
        self.split: Split | None = None
        self.clean: dict[str, InteractionData] = {}
        self.hidden_likes: Split | None = None  # the world's missed likes, split like the observed pairs
        self.withheld: InteractionData | None = None  # training pairs hidden from training (hide_positives)
        self._load_data()

    # loading ---------------------------------------------------------------------------------
    @property
    def uses_world(self) -> bool:
        return self.path is None and self.hparams.train_path is None

    def world_config(self):
        """The WorldConfig this DataModule generates when no path is given."""
        from recsys.data.world import WorldConfig

        hp = self.hparams
        overrides = dict(hp.world_options or {})
        for field, value in (("seed", hp.world_seed), ("n_users", hp.world_users), ("n_items", hp.world_items),
                             ("false_positive_rate", hp.false_positive_rate),
                             ("missing_positive_rate", hp.missing_positive_rate)):
            if value is not None:
                overrides[field] = value
        overrides.setdefault("seed", self.seed)
        return WorldConfig.preset(hp.world_preset, **overrides)

    def _load_data(self) -> None:
        """Load and split once, at construction, so n_users/n_items exist for the model's arguments."""
        hp = self.hparams
        if hp.train_path is not None:
            from recsys.data.formats import load_presplit

            self.split = load_presplit(hp.train_path, hp.valid_path, hp.test_path, format=hp.format,
                                       columns=hp.columns, sep=hp.sep)
            self.split = self._filter_split(self.split)
        else:
            if self.uses_world:
                from recsys.data.world import generate_world

                self.world = generate_world(self.world_config())
                data = self.world.observed
            else:
                from recsys.data.formats import load

                data = load(hp.path, format=hp.format, columns=hp.columns, sep=hp.sep)
            data = self._filter(data)
            from recsys.data.splits import make_split

            self.split = make_split(data, self.split_kind, **self._split_options())
        if self.world is not None:
            self.clean = {"valid": self.world.clean(self.split.valid), "test": self.world.clean(self.split.test)}
            self.hidden_likes = self._split_hidden_likes()
        if hp.hide_positives > 0:
            self._withhold_training(hp.hide_positives, self.seed if hp.hide_seed is None else hp.hide_seed)
        self._index_training()

    def _split_options(self) -> dict[str, Any]:
        """The options `make_split` takes for this split kind (leave-one-out takes none)."""
        if self.split_kind == "random":
            return {"ratios": self.ratios, "seed": self.seed}
        return {"ratios": self.ratios} if self.split_kind == "temporal" else {}

    def _split_hidden_likes(self) -> Split | None:
        """The world's missed likes (liked, exposed, never observed) split with the observed split's rule.

        The same split kind, ratios and seed as the observed pairs, applied to the missed pairs on
        their own, so a user's hidden likes fall into train/valid/test shares in the same proportions
        as their observed pairs. Only the test share is ever a target (the "hidden" view); the train
        and valid shares are masked there, as train and valid observed pairs are. No missed pair is
        an observed pair, so the three shares and the observed split are disjoint.
        """
        missed = self.world.missed
        train = self.split.train
        if not len(missed) or missed.vocab.digest() != train.vocab.digest():
            return None  # no missed likes, or filters re-indexed the ids
        from recsys.data.splits import make_split

        missed = replace(missed, vocab=train.vocab)  # the very object, so the evaluator skips its check
        hidden = make_split(missed, self.split_kind, **self._split_options())
        log.info("hidden likes (liked, exposed, never observed): %s", hidden.describe())
        return hidden

    def _withhold_training(self, share: float, seed: int) -> None:
        """Move a share of each user's training pairs out of training into `self.withheld`."""
        from recsys.data.splits import random_split

        kept = random_split(self.split.train, (1.0 - share, 0.0, share), seed=seed)
        self.withheld = kept.test
        self.split = Split(kept.train, self.split.valid, self.split.test)
        log.info("withheld %d of %d training rows (share %g, seed %d); they are the 'withheld' test view",
                 len(kept.test), len(kept.train) + len(kept.test), share, seed)

    def _index_training(self) -> None:
        """What the samplers and checkpoints need from the split: the training positives and their matrix."""
        train = self.split.train.positives()
        if not len(train):
            raise UserInputError("the training split holds no positive interaction")
        self.train_users, self.train_items = train.user, train.item
        self.train_matrix = self.split.train.matrix()
        self.sampler = NegativeSampler(self.train_matrix, self.sampler_kind, self.popularity_exponent)
        log.info("data: %s; split %s", self.split.train.describe(), self.split.describe())

    def _filter(self, data: InteractionData, kcore: int | None = None) -> InteractionData:
        """Rating threshold, de-duplication, then k-core, as configured (each logs what it removes)."""
        hp = self.hparams
        kcore = hp.kcore if kcore is None else kcore
        if hp.rating_threshold is None and hp.dedup is None and not kcore:
            return data
        from recsys.data import filters

        return filters.apply(data, rating_threshold=hp.rating_threshold, kcore=kcore, dedup=hp.dedup)

    def _filter_split(self, split: Split) -> Split:
        """Already-split files: the rating threshold and dedup apply per file; k-core would leak, so it is refused."""
        hp = self.hparams
        if hp.kcore:
            raise UserInputError("data.kcore cannot be applied to already-split files (it would change the "
                                 "splits); filter the files before splitting them")
        parts = [self._filter(part, kcore=0) for part in (split.train, split.valid, split.test)]
        return Split(*parts)

    # sizes the CLI links into the model --------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.split.train.n_users

    @property
    def n_items(self) -> int:
        return self.split.train.n_items

    # what models ask for -------------------------------------------------------------------------
    def train_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) of each user's distinct training positives, sorted within rows."""
        return self.sampler.indptr, self.sampler.indices

    def seen_items(self, users: np.ndarray) -> sp.csr_matrix:
        """Rows of train+valid positives for `users`: what `predict` never recommends."""
        if not hasattr(self, "_seen"):
            self._seen = (self.train_matrix + self.split.valid.matrix()).tocsr()
        return self._seen[np.asarray(users)]

    def evaluation_inputs(self, stage: str) -> tuple[dict[str, InteractionData],
                                                     list[InteractionData] | dict[str, list[InteractionData]]]:
        """(truth, exclude) for the evaluator. valid: masks train; test: masks train and valid.

        On the world the clean truth is added as "<stage>_clean" for validation and "clean" for test,
        and at test the "hidden" view: the clean test pairs plus the test share of the hidden likes
        (what the test split would hold if no liked item had gone unobserved and no click were
        false), with train, valid and the other shares of the hidden likes masked.
        With `hide_positives`, the withheld training pairs are masked in every test view but their
        own, "withheld", which masks the kept training pairs, valid and test.
        Validation never sees hidden likes or withheld pairs (selection uses observed labels only).
        """
        if stage == "valid":
            truth = {"valid": self.split.valid}
            if self.clean:
                truth["valid_clean"] = self.clean["valid"]
            return truth, [self.split.train]
        if stage != "test":
            raise ValueError(f"unknown evaluation stage {stage!r}")
        observed = [self.split.train, self.split.valid]
        if self.withheld is not None:
            observed.append(self.withheld)
        truth = {"test": self.split.test}
        if self.clean:
            truth["clean"] = self.clean["test"]
        if self.hidden_likes is None and self.withheld is None:
            return truth, observed
        exclude = {name: observed for name in truth}
        if self.hidden_likes is not None and len(self.hidden_likes.test):
            truth["hidden"] = _union(self.clean["test"], self.hidden_likes.test)
            exclude["hidden"] = [*observed, self.hidden_likes.train, self.hidden_likes.valid]
        if self.withheld is not None and len(self.withheld):
            truth["withheld"] = self.withheld
            exclude["withheld"] = [self.split.train, self.split.valid, self.split.test]
        return truth, exclude

    def flip_contrasts(self, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Pairs on which NBPO's rho = P(observed 0 | liked) means something: name -> (users, items, is_target).

        "hidden" (world): every hidden like (liked, exposed, never observed), each beside one pair of
        the same user that is neither observed in any split nor liked. "hidden_vs_heldout" (world):
        the hidden likes against the liked pairs observed in valid and test (liked, unseen in training
        too, but observed): where missing is uniform among liked exposed items, as in the world, a
        rho that means P(observed 0 | liked) has nothing to tell them apart by (AUC 0.5). "withheld" (hide_positives):
        every withheld training pair beside one pair of the same user with no interaction at all.
        The contrast pairs are drawn from `seed`, so every run is judged on the same pairs.
        """
        observed = (self.train_matrix + self.split.valid.matrix() + self.split.test.matrix()).tocsr()
        if self.withheld is not None:
            observed = (observed + self.withheld.matrix()).tocsr()
        contrasts = {}
        if self.hidden_likes is not None:
            missed = _union(self.hidden_likes.train, _union(self.hidden_likes.valid, self.hidden_likes.test))
            forbidden = (observed + self.world.liked_items().astype(np.float32)).tocsr()
            contrasts["hidden"] = _with_contrast(missed.user, missed.item, forbidden, seed)
            heldout = self.world.clean(_union(self.split.valid, self.split.test))
            contrasts["hidden_vs_heldout"] = (np.concatenate([missed.user, heldout.user]),
                                              np.concatenate([missed.item, heldout.item]),
                                              np.arange(len(missed) + len(heldout)) < len(missed))
        if self.withheld is not None and len(self.withheld):
            contrasts["withheld"] = _with_contrast(self.withheld.user, self.withheld.item, observed, seed)
        return contrasts

    def history_windows(self, stage: str, length: int) -> np.ndarray:
        """(n_users, length) tokens (item + 1, 0 = padding) of what each user did before `stage`'s truth:
        training items for "valid", training and validation items for "test" and "predict"."""
        from recsys.data.sequence_windows import last_windows, user_sequences

        parts = [self.split.train.positives()]
        if stage != "valid":
            parts.append(self.split.valid.positives())
        return last_windows(user_sequences(parts, self.n_users), length)

    def checkpoint_metadata(self) -> dict[str, Any]:
        """The data half of checkpoint["prefengine"]: what export and serving need to know about the data."""
        train = self.split.train
        vocab = train.vocab
        catalog = train.catalog
        titles = list(catalog.titles) if catalog is not None else list(vocab.items)
        categories = list(catalog.categories) if catalog is not None else [""] * vocab.n_items
        return {
            "vocab_users": list(vocab.users), "vocab_items": list(vocab.items), "vocab_digest": vocab.digest(),
            "catalog": {"title": [str(t) for t in titles], "category": [str(c) for c in categories]},
            "item_popularity": train.item_counts().astype(int).tolist(),
            # Tensors, not lists: at 10M interactions the lists cost 290 MB at every checkpoint save.
            "train_items_by_user": {"indptr": torch.as_tensor(self.sampler.indptr, dtype=torch.int64),
                                    "indices": torch.as_tensor(self.sampler.indices, dtype=torch.int64)},
        }

    # training batches ----------------------------------------------------------------------------
    def configure_sampling(self, batch_size: int | None = None, negatives: int | None = None,
                           sampler: str | None = None, popularity_exponent: float | None = None,
                           sample_seed: int | None = None) -> None:
        """Change how training batches are drawn without touching the data or the split (used by compare)."""
        if negatives is not None and negatives < 1:
            raise UserInputError(f"negatives per positive must be >= 1, got {negatives}")
        if batch_size is not None and batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = self.batch_size if batch_size is None else int(batch_size)
        self.negatives = self.negatives if negatives is None else int(negatives)
        self.sample_seed = self.sample_seed if sample_seed is None else int(sample_seed)
        if sampler is not None or popularity_exponent is not None:
            self.sampler_kind = sampler or self.sampler_kind
            if popularity_exponent is not None:
                self.popularity_exponent = popularity_exponent
            self.sampler = NegativeSampler(self.train_matrix, self.sampler_kind, self.popularity_exponent)

    def _current_epoch(self) -> int:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        """What the model asks for (`module.training_batches`): sampled triples, all positives at once, or nothing."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        wanted = getattr(module, "training_batches", "triples")
        rank, world = trainer_rank_and_world(self.trainer)
        if wanted == "positives":
            mine = self.train_users % world == rank  # a user's positives stay on one rank
            everything = {"users": torch.from_numpy(self.train_users[mine]),
                          "positives": torch.from_numpy(self.train_items[mine])}
            return DataLoader(_Single(everything), batch_size=None, shuffle=False)
        if wanted == "none":
            return DataLoader(_Single({}), batch_size=None, shuffle=False)
        if wanted == "sequences":  # sequential models: each user's time-ordered training items as windows
            from recsys.data.sequence_windows import NextItemWindows, trim_padding, user_sequences

            windows = NextItemWindows(user_sequences([self.split.train.positives()], self.n_users),
                                      int(module.max_length))
            generator = torch.Generator().manual_seed(self.sample_seed + self._current_epoch())
            return DataLoader(windows, batch_size=self.batch_size, shuffle=True, generator=generator,
                              collate_fn=trim_padding)
        share = self.rank_share(len(self.train_users))
        batches = TripleBatches(self.train_users, self.train_items, self.sampler, self.batch_size, self.negatives,
                                self.sample_seed, self._current_epoch, share)
        return DataLoader(batches, batch_size=None, shuffle=False)

    def rank_share(self, n_rows: int) -> RankShare:
        """This process's share of `n_rows` training rows per epoch (all of them on one process)."""
        rank, world = trainer_rank_and_world(self.trainer)
        share = RankShare(n_rows, self.batch_size, rank, world)
        if world > 1 and rank == 0:
            log.info("%d processes: each trains on its own %d-row slice of every global batch of %d rows "
                     "(%d of %d rows per epoch wait for the next epoch's shuffle)", world, self.batch_size,
                     self.batch_size * world, share.dropped_per_epoch, n_rows)
        return share

    def _evaluation_loader(self) -> DataLoader:
        # The evaluator batches users itself; one step runs it over the whole split.
        return DataLoader(_Single(torch.zeros(1)), batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader()

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader()

    def predict_dataloader(self) -> DataLoader:
        users = torch.arange(self.n_users)
        return DataLoader(users, batch_size=self.hparams.eval_users_per_batch, shuffle=False)
