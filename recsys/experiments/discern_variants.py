"""Variants of Mender for sentiment following ("avoid X"), scored by `python -m recsys discern` beside the others.

    python -m recsys discern -c configs/recsys/mender_dpo.yaml --out artifacts/discern/dpo

- `mender`: as in Paischer et al. (2024) (`recsys.experiments.discern.train_variant`);
- `mender-polarity`: each preference token gets a learned like / dislike embedding (polarity from
  the extractor's phrasing, `recsys.preferences.extraction.is_negative`), and supervised training
  adds queries that pair a dislike with its item (`recsys.preferences.pairs.negative_training_queries`);
- `mender-sdpo`: the trained Mender checkpoint fine-tuned with S-DPO (or DPO, `dpo.objective`) on
  chosen / rejected items from the data (`recsys.preferences.pairs.build_pairs`) against a frozen copy
  of itself (`recsys.models.preference_optimization`);
- `mender-both`: the same fine-tuning from the `mender-polarity` checkpoint;
- `tiger-sdpo`: the trained TIGER checkpoint fine-tuned the same way, for sequences without preferences
  (the Amazon files): the next item chosen over random unseen items (`configs/recsys/tiger_sdpo.yaml`).

Each variant's checkpoint is DIR/<variant>/best.ckpt (a `GenerativeRetriever` checkpoint, so
`python -m recsys export` turns any of them into a serving bundle). `recsys.experiments.discern.run` scores all
of them on the five axes and tests each against Mender, paired over the same queries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from recsys.errors import UserInputError
from recsys.models.generative import GenerativeRetriever
from recsys.models.generative_data import Examples, SequenceSplit

log = logging.getLogger(__name__)

VARIANTS = ("tiger", "mender", "mender-polarity", "mender-sdpo", "mender-both", "tiger-sdpo")
STARTS = {"mender-sdpo": "mender", "mender-both": "mender-polarity", "tiger-sdpo": "tiger"}  # the checkpoint preference optimization starts from


@dataclass
class Inputs:
    """What every variant trains and is scored on (built once by `recsys.experiments.discern.run`)."""

    data: object  # recsys.experiments.discern.DiscernData
    split: SequenceSplit
    ids: object  # recsys.models.semantic_ids.SemanticIds
    item_embeddings: np.ndarray | None
    preferences: dict[str, list[np.ndarray]] | None
    table: object | None  # recsys.preferences.axes.SentenceTable
    timeline: object | None  # recsys.preferences.extraction.PreferenceTimeline
    review_negative: set[tuple[int, int]]
    # `recsys.experiments.discern.train_variant` and the evaluation device, handed in so this module does not
    # import the benchmark that imports it
    train_supervised: Callable[..., GenerativeRetriever]
    device: torch.device


def train(variant: str, inputs: Inputs, config, out: Path, trained: dict[str, GenerativeRetriever] | None = None,
          ) -> GenerativeRetriever:
    """Train (or reload) one variant; `trained` caches the models of this run, so a start is trained once."""
    trained = {} if trained is None else trained
    if variant in trained:
        return trained[variant]
    if variant not in VARIANTS:
        raise UserInputError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant in STARTS:
        start = train(STARTS[variant], inputs, config, out, trained)
        model = preference_optimize(variant, start, out / STARTS[variant] / "best.ckpt", inputs, config, out)
    else:
        model = _supervised(variant, inputs, config, out)
    trained[variant] = model
    return model


def _supervised(variant: str, inputs: Inputs, config, out: Path) -> GenerativeRetriever:
    polarity = variant == "mender-polarity"
    if polarity:
        config = replace(config, model=replace(config.model, preference_polarity=True),
                         preferences=replace(config.preferences, negative_queries=True))
    elif variant == "mender" and config.model.preference_polarity:
        config = replace(config, model=replace(config.model, preference_polarity=False))
    split, preferences = inputs.split, inputs.preferences
    if variant != "tiger" and config.preferences.negative_queries and inputs.timeline is not None:
        split, preferences = with_negative_queries(inputs)
    return inputs.train_supervised("tiger" if variant == "tiger" else "mender", inputs.data, split, inputs.ids,
                         inputs.item_embeddings, preferences, inputs.table, config, out, name=variant)


def with_negative_queries(inputs: Inputs) -> tuple[SequenceSplit, dict[str, list[np.ndarray]]]:
    """The training part plus the queries that pair a dislike with its item (validation unchanged)."""
    from recsys.preferences.pairs import negative_training_queries

    train_part = inputs.split.train
    extra, extra_prefs = negative_training_queries(inputs.data.sequences, train_part, inputs.timeline, inputs.table,
                                                   inputs.item_embeddings, inputs.review_negative)
    joined = Examples(*(np.concatenate([getattr(train_part, f), getattr(extra, f)])
                        for f in ("user", "step", "history", "target")))
    preferences = {**inputs.preferences, "train": list(inputs.preferences["train"]) + list(extra_prefs)}
    return replace(inputs.split, train=joined), preferences


def _ratings(data) -> dict[tuple[int, int], float]:
    reviews = getattr(data.world, "reviews", None)
    if reviews is None or "rating" not in reviews:
        return {}
    return {(int(u), int(i)): float(r) for u, i, r in zip(reviews["user"], reviews["item"], reviews["rating"])}


def preference_optimize(variant: str, start: GenerativeRetriever, start_path: Path, inputs: Inputs, config,
                        out: Path) -> GenerativeRetriever:
    """Fine-tune `start` with DPO / S-DPO (config.dpo) on pairs from the training part; early stopping on the
    validation pairs' loss; the best epoch's policy is saved as out/<variant>/best.ckpt."""
    from recsys.models.preference_optimization import PreferenceOptimization
    from recsys.models.semantic_ids import deterministic_setting
    from recsys.preferences.pairs import PairDataset, build_pairs

    with_preferences = variant.startswith("mender")
    if with_preferences and inputs.timeline is None:
        raise UserInputError(f"{variant} needs the preference world's reviews")
    options = config.dpo
    kinds = options.kinds if with_preferences else ["positive"]  # TIGER reads no preferences
    directory = out / variant
    best = directory / "best.ckpt"
    settings = {key: getattr(options, key) for key in ("objective", "beta", "n_negatives", "lr", "sft_weight",
                                                       "max_epochs", "batch_size", "max_train_pairs")}
    settings["kinds"] = list(kinds)
    settings["start_sha"] = _sha(start_path)
    if config.train.reuse_checkpoints and best.is_file():
        stored = torch.load(best, map_location="cpu", weights_only=False)
        codes = stored.get("state_dict", {}).get("item_codes")
        if stored.get("prefengine", {}).get("preference_optimization_settings") == settings and codes is not None \
                and np.array_equal(codes[:-1].numpy(), inputs.ids.codes):
            log.info("%s: reusing %s (same start, settings and semantic IDs)", variant, best)
            model = GenerativeRetriever.load_from_checkpoint(best, map_location="cpu", weights_only=False)
            return model.to(inputs.device)

    pl.seed_everything(config.seed, workers=True, verbose=False)
    polarity = start.reads_polarity
    width = start.hparams.max_preferences
    data = {}
    for part in ("train", "valid"):
        pairs = build_pairs(inputs.data.sequences, getattr(inputs.split, part), inputs.timeline, inputs.table,
                            inputs.item_embeddings, inputs.review_negative, _ratings(inputs.data),
                            options.n_negatives, config.seed, kinds, n_items=len(inputs.data.item_ids))
        if part == "train" and options.max_train_pairs and len(pairs) > options.max_train_pairs:
            # a fixed seeded subset, so an epoch fits a CPU budget and the run still reproduces
            keep = np.sort(np.random.default_rng([config.seed, 47]).permutation(len(pairs))[:options.max_train_pairs])
            pairs = pairs.subset(keep)
        data[part] = PairDataset(pairs, inputs.table, width, polarity)
        log.info("%s: %d %s pairs %s", variant, len(pairs), part, pairs.counts())
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(data["train"], batch_size=options.batch_size, shuffle=True, generator=generator)
    valid_loader = DataLoader(data["valid"], batch_size=options.batch_size * 2)
    module = PreferenceOptimization(checkpoint=str(start_path), beta=options.beta, n_negatives=options.n_negatives,
                                    objective=options.objective, lr=options.lr, sft_weight=options.sft_weight)
    directory.mkdir(parents=True, exist_ok=True)
    best.unlink(missing_ok=True)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=directory, filename="dpo", monitor="valid/loss", mode="min",
                                              enable_version_counter=False)
    stopping = pl.callbacks.EarlyStopping(monitor="valid/loss", mode="min", patience=options.patience)
    trainer = pl.Trainer(max_epochs=options.max_epochs, accelerator=config.train.accelerator, devices=1,
                         logger=pl.loggers.CSVLogger(str(out), name=variant, version=""),
                         callbacks=[checkpoint, stopping], enable_progress_bar=config.train.progress,
                         enable_model_summary=False, deterministic=deterministic_setting(config.train.accelerator),
                         num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.validate(module, valid_loader, verbose=False)  # the start's validation numbers, for the log
    before = {k: float(v) for k, v in trainer.callback_metrics.items()}
    trainer.fit(module, train_loader, valid_loader)
    tuned = PreferenceOptimization.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu",
                                                        weights_only=False)
    after = {k: float(v) for k, v in trainer.callback_metrics.items()}
    Path(checkpoint.best_model_path).unlink(missing_ok=True)  # policy + reference; only the policy is kept
    history = {"start": before, "last_epoch": after, "best_valid_loss": float(checkpoint.best_model_score),
               "seconds": round(time.perf_counter() - started, 1), "pairs": {p: len(d) for p, d in data.items()}}
    tuned.save_policy(best, {"preference_optimization_settings": settings, "preference_optimization_run": history})
    log.info("%s: fine-tuned in %.0f s; valid loss %.4f -> %.4f, ranking accuracy %.3f -> %.3f", variant,
             history["seconds"], before.get("valid/loss", float("nan")), history["best_valid_loss"],
             before.get("valid/ranking_accuracy", float("nan")), after.get("valid/ranking_accuracy", float("nan")))
    model = GenerativeRetriever.load_from_checkpoint(best, map_location="cpu", weights_only=False)
    return model.to(inputs.device)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
