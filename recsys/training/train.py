"""`python -m recsys fit|validate|test|predict -c configs/recsys/<name>.yaml`: the LightningCLI for recommenders.

Any recommender LightningModule (`model.class_path`) trains on an `InteractionDataModule`
(`data.*`, every data option a flag); the table sizes are linked from the data into the model.
Everything a run writes lands under `--trainer.default_root_dir`: `checkpoints/`, `logs/` (CSV),
`config.yaml` and `metrics.json` (flat "<split>/<metric>@<k>" keys). `fit` ends by validating
and testing the best checkpoint; `predict` writes `predictions.csv` (user, rank, item, score).
`--trainer.strategy ddp --trainer.devices N` runs N processes (`recsys.training.distributed`); rank 0
writes the files.
Errors a user can cause raise `UserInputError` with one line of explanation.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jsonargparse import ArgumentError
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger

from recsys.data.datamodule import InteractionDataModule
from recsys.data.ranks import all_gather_rows
from recsys.errors import UserInputError
from recsys.models.base import METRIC_KEY
from recsys.training.distributed import TorchRecDDPStrategy
from recsys.training.seeds import pop_seeds, report, summarize, write_summary
from recsys.training.selection import ValidationCurve, selection_record

log = logging.getLogger(__name__)

DEFAULT_MONITOR = "valid/ndcg@20"
DEFAULT_ROOT = "artifacts/runs/default"


class TopKWriter(BasePredictionWriter):
    """Writes each user's top-K unseen items, with outside ids, to `<root>/predictions.csv`."""

    def __init__(self, path: Path):
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        vocab = trainer.datamodule.split.train.vocab
        users = torch.cat([p["users"] for p in predictions]).numpy()
        items = torch.cat([p["items"] for p in predictions]).numpy()
        scores = torch.cat([p["scores"] for p in predictions]).numpy()
        if trainer.world_size > 1:
            # Each rank predicted its share (Lightning's sampler repeats a few users to even the shares).
            users, items, scores = (np.concatenate(all_gather_rows(a)) for a in (users, items, scores))
            users, first = np.unique(users, return_index=True)
            items, scores = items[first], scores[first]
            if not trainer.is_global_zero:
                return
        k = items.shape[1]
        frame = pd.DataFrame({"user": np.repeat(vocab.users[users], k), "rank": np.tile(np.arange(1, k + 1), len(users)),
                              "item": vocab.items[items.ravel()], "score": scores.ravel()})
        frame = frame[np.isfinite(frame["score"])]  # users who have seen almost every item get fewer rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.path, index=False)
        log.info("wrote %d recommendations for %d users to %s", len(frame), len(users), self.path)


class RecommenderCLI(LightningCLI):
    """LightningCLI with the data->model links, a run directory layout and metrics.json."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.n_users", "model.init_args.n_users", apply_on="instantiate")
        parser.link_arguments("data.n_items", "model.init_args.n_items", apply_on="instantiate")

    # -- where things go ----------------------------------------------------------------------
    def __init__(self, *args, subdir: str = "", **kwargs):
        self.subdir = subdir  # a run of `fit --seeds` writes into <root>/seed<k>
        self.validation_curve: ValidationCurve | None = None
        self.selection: dict[str, Any] | None = None  # after fit: how the epoch was chosen
        self.fit_metrics: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    @property
    def base_root(self) -> Path:
        return Path(self.config[self.subcommand].trainer.default_root_dir or DEFAULT_ROOT)

    @property
    def root(self) -> Path:
        return self.base_root / self.subdir

    def _parse_ckpt_path(self) -> None:
        """The config defines the model; the checkpoint must fit it (checked when it loads), never redefine it."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in ("best", "last", "hpc", "registry") and not Path(ckpt_path).is_file():
            raise UserInputError(f"--ckpt_path: {ckpt_path} is not a file")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        root = Path(config.get("default_root_dir") or DEFAULT_ROOT) / self.subdir
        config["default_root_dir"] = str(root)
        if config.get("strategy") == "ddp":
            # DDP that leaves sharded TorchRec tables to TorchRec; otherwise the same as Lightning's "ddp".
            config["strategy"] = TorchRecDDPStrategy.strategy_name
        if config.get("logger") in (None, True):
            config["logger"] = CSVLogger(save_dir=str(root), name="logs")
        trainer = super()._instantiate_trainer(config, callbacks)
        checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
        if self.subcommand == "fit" and checkpoints and checkpoints[0].monitor is None:
            # Lightning's default checkpoint keeps the last epoch; we want the best validation epoch.
            trainer.callbacks.remove(checkpoints[0])
            checkpoints = []
        if self.subcommand == "fit" and not checkpoints:
            monitor = getattr(self.model, "monitor", None) or DEFAULT_MONITOR
            checkpoint = ModelCheckpoint(monitor=monitor, mode="max", filename="best-{epoch}")
            trainer.callbacks.append(checkpoint)
            checkpoints = [checkpoint]
        for checkpoint in checkpoints:
            if checkpoint.dirpath is None:
                checkpoint.dirpath = str(root / "checkpoints")
        if self.subcommand == "fit":
            self.validation_curve = ValidationCurve(checkpoints[0].monitor)
            trainer.callbacks.append(self.validation_curve)
        if self.subcommand == "predict":
            trainer.callbacks.append(TopKWriter(root / "predictions.csv"))
        return trainer

    # -- after each subcommand: metrics.json --------------------------------------------------------
    def _metrics(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.trainer.callback_metrics.items()
                if METRIC_KEY.match(key)}

    def _write_metrics(self, metrics: dict[str, float], selection: dict[str, Any] | None = None) -> Path:
        path = self.root / "metrics.json"
        if not self.trainer.is_global_zero:  # every rank holds the same metrics; one writes them
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = dict(sorted(metrics.items()))
        if selection is not None:
            payload["selection"] = selection
        path.write_text(json.dumps(payload, indent=2) + "\n")
        log.info("wrote %s", path)
        print(f"metrics: {path}")
        return path

    def after_fit(self) -> None:
        # before validate/test below, which reload callback states from the best checkpoint
        self.selection = selection_record(self.trainer, self.validation_curve) if self.validation_curve else None
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        if not best:
            # Lightning checkpoints only after optimizer steps; a model with nothing to optimize
            # (popularity) takes none, so its final state is saved here for test, predict and export.
            best = str(self.root / "checkpoints" / "final.ckpt")
            self.trainer.save_checkpoint(best)
            log.info("no validation checkpoint was kept; saved the final weights to %s", best)
        ckpt_path = best
        self.trainer.validate(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path, verbose=False)
        metrics = self._metrics()
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
        metrics.update(self._metrics())
        self._write_metrics(metrics, self.selection)
        self.fit_metrics = metrics
        if self.trainer.is_global_zero:
            store_metrics_in_checkpoint(Path(best), metrics)
            print(f"best checkpoint: {best}")
            if self.selection:
                print(f"selection: {self.selection['why']}")

    def after_validate(self) -> None:
        self._write_metrics(self._metrics())

    def after_test(self) -> None:
        self._write_metrics(self._metrics())


def store_metrics_in_checkpoint(path: Path, metrics: dict[str, float]) -> None:
    """Put the best checkpoint's own validation and test metrics into its prefengine block (for export)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint.setdefault("prefengine", {}).setdefault("metrics", {}).update(metrics)
    torch.save(checkpoint, path)


def _one_line(error: BaseException) -> str:
    """One line from a jsonargparse error, which lists every alternative it tried over many lines.

    Keeps the chain of keys (e.g. model.objective) and the innermost concrete complaint.
    """
    text = str(error)
    lines = [line.strip().lstrip("- ").strip() for line in text.splitlines() if line.strip()]
    keys = list(dict.fromkeys(re.findall(r'Parser key "([^"]+)"', text)))
    details = [line for line in lines if re.match(r"(Expected|Not a valid|Unrecognized|Key .* is required|"
                                                   r"Option .* is not accepted|No action for)", line)
               and "NoneType" not in line and "Union subtypes" not in line]
    if not details:
        return lines[0] if lines else type(error).__name__
    detail = details[0]
    given = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), None)
    if detail.startswith("Expected") and "Got value" not in detail and given is not None:
        detail = f"{detail}; got {given!r}"
    literal = re.match(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)", detail)
    if literal:
        choices = literal.group(1).replace("'", "")
        detail = f"must be one of {choices}; got {literal.group(2)!r}"
    return f"{'.'.join(keys)}: {detail}" if keys else detail


def quiet_lightning_warnings() -> None:
    """Silence Lightning warnings that do not apply here, so the ones that do stay visible.

    - dataloader workers: batches are built by vectorized numpy in the main process on purpose;
    - LeafSpec deprecation: raised inside Lightning itself with torch >= 2.9, nothing to act on;
    - no optimizer: the popularity baseline has nothing to optimize;
    - `args` with a non-empty sys.argv: `main(argv)` always passes its argv explicitly;
    - on N processes: evaluation metrics are computed from gathered top-K lists, identical on every
      rank (no sync_dist needed); the one-item evaluation loader is meant to run once per rank;
      the training batches are iterable datasets with a length, read without worker processes.
    """
    for message in (".*LightningCLI's args parameter is intended.*",".*does not have many workers.*", ".*LeafSpec.*is deprecated.*",
                    ".*configure_optimizers` returned `None`.*", ".*when logging on epoch level in distributed setting.*",
                    ".*Using `DistributedSampler` with the dataloaders.*", ".*`IterableDataset` has `__len__` defined.*"):
        warnings.filterwarnings("ignore", message=message)


def log_to_console() -> None:
    """Our own INFO messages (what was loaded, filtered, written) on stderr; other libraries stay at WARNING."""
    logger = logging.getLogger("recsys")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str]) -> int:
    """`argv` starts with the subcommand: fit, validate, test or predict.

    `fit --seeds 0,1,2` fits once per seed (`recsys.training.seeds`) and writes mean ± sd over them.
    """
    log_to_console()
    quiet_lightning_warnings()
    argv, seeds = pop_seeds(argv)
    if seeds is None:
        _run(argv)
        return 0
    if not argv or argv[0] != "fit":
        raise UserInputError("--seeds applies to `recsys fit` only")
    metrics, selections, cli = {}, {}, None
    for seed in seeds:
        print(f"== seed {seed} ({seeds.index(seed) + 1} of {len(seeds)})", flush=True)
        cli = _run([*argv, "--seed_everything", str(seed), "--data.sample_seed", str(seed)], subdir=f"seed{seed}")
        metrics[seed], selections[seed] = cli.fit_metrics, cli.selection
    if cli.trainer.is_global_zero:
        summary = summarize(metrics, selections)
        path = write_summary(cli.base_root, summary)
        print(report(summary))
        print(f"metrics over seeds: {path}")
    return 0


def _run(argv: list[str], subdir: str = "") -> RecommenderCLI:
    try:
        return RecommenderCLI(
            model_class=LightningModule, subclass_mode_model=True, datamodule_class=InteractionDataModule,
            subclass_mode_data=True,  # so a config may name a subclass (e.g. the personality DataModule)
            seed_everything_default=0, save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False}, args=argv, auto_configure_optimizers=False, subdir=subdir)
    except ArgumentError as error:
        raise UserInputError(_one_line(error)) from None
    except ValueError as error:  # jsonargparse wraps errors raised while it instantiates a subclass
        cause = _user_error_inside(error)
        if cause is None:
            raise
        raise cause from None


def _user_error_inside(error: BaseException) -> UserInputError | None:
    """The UserInputError that an exception was raised from, if any (following __cause__/__context__)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
