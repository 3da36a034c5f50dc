"""`InteractionDataModule`: data for implicit-feedback recommenders, every option a CLI flag.

Data come from one of three places, in this order:
- `train_path` (+ `valid_path`, `test_path`): files already split;
- `path`: one file or directory in any supported format, filtered and split here;
- neither: the preference world (ground truth kept, so evaluation also runs on clean labels).

Training batches are triples (user, positive, n sampled negatives), shuffled per epoch from
(seed, epoch) and sampled from (seed, epoch, batch), so runs repeat exactly. On N processes
(`--trainer.strategy ddp`) rank r takes its own slice of every global batch and draws its own
negatives (`recsys.distributed.RankShare`): no two ranks train on the same rows, and
`batch_size` is per process, as everywhere in Lightning. The batches are an iterable dataset so
that Lightning does not add a DistributedSampler on top. A model whose compiled kernel samples
by itself (`training_batches == "positives"`) gets all training positives as one batch per epoch
instead (on N processes, those of the users u with u mod N == r); a model that learns nothing
(popularity) gets one empty batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from recsys.data.interactions import InteractionData, Split
from recsys.distributed import RankShare, trainer_rank_and_world
from recsys.errors import UserInputError
from recsys.models.sampling import NegativeSampler

log = logging.getLogger(__name__)

SplitKind = Literal["random", "loo", "temporal"]


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
        batch_size: training positives per batch.
        negatives: sampled negatives per positive (>= 1).
        sampler: "uniform" or "popularity" negatives; popularity_exponent damps popularity.
        world_preset, world_seed, world_users, world_items, false_positive_rate,
        missing_positive_rate, world_options: the preference world used when no path is given
            (world_options: any further WorldConfig field -> value).
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
                 eval_users_per_batch: int = 1024):
        super().__init__()
        if negatives < 1:
            raise UserInputError(f"data.negatives (negatives per positive) must be >= 1, got {negatives}")
        if batch_size < 1 or eval_users_per_batch < 1:
            raise UserInputError("data.batch_size and data.eval_users_per_batch must be >= 1")
        if split not in ("random", "loo", "temporal"):
            raise UserInputError(f"data.split must be random, loo or temporal, got {split!r}")
        if sampler not in ("uniform", "popularity"):
            raise UserInputError(f"data.sampler must be 'uniform' or 'popularity', got {sampler!r}")
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
        self.sample_seed = self.seed  # epoch shuffles and negative draws; compare varies it per run
        self.sampler_kind, self.popularity_exponent = sampler, popularity_exponent
        self.world = None
        self.split: Split | None = None
        self.clean: dict[str, InteractionData] = {}
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

            options = {"random": {"ratios": self.ratios, "seed": self.seed}, "temporal": {"ratios": self.ratios},
                       "loo": {}}[self.split_kind]  # leave-one-out takes neither ratios nor a seed
            self.split = make_split(data, self.split_kind, **options)
        if self.world is not None:
            self.clean = {"valid": self.world.clean(self.split.valid), "test": self.world.clean(self.split.test)}
        self._index_training()

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

    def evaluation_inputs(self, stage: str) -> tuple[dict[str, InteractionData], list[InteractionData]]:
        """(truth, exclude) for the evaluator. valid: masks train; test: masks train and valid.

        On the world the clean truth is added as "<stage>_clean" for validation and "clean" for test.
        """
        if stage == "valid":
            truth = {"valid": self.split.valid}
            if self.clean:
                truth["valid_clean"] = self.clean["valid"]
            return truth, [self.split.train]
        if stage == "test":
            truth = {"test": self.split.test}
            if self.clean:
                truth["clean"] = self.clean["test"]
            return truth, [self.split.train, self.split.valid]
        raise ValueError(f"unknown evaluation stage {stage!r}")

    def history_windows(self, stage: str, length: int) -> np.ndarray:
        """(n_users, length) tokens (item + 1, 0 = padding) of what each user did before `stage`'s truth:
        training items for "valid", training and validation items for "test" and "predict"."""
        from recsys.data.sequence_windows import last_windows, user_sequences

        parts = [self.split.train.positives()]
        if stage != "valid":
            parts.append(self.split.valid.positives())
        return last_windows(user_sequences(parts, self.n_users), length)

    def checkpoint_metadata(self) -> dict[str, Any]:
        """The data half of checkpoint["prefengine"] (see TEAM.md)."""
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
