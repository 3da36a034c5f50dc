"""What every comparison shares: the config's model specs, one training run, the seed summary and its report.

`recsys.experiments.compare` (the noisy-label comparison) and `recsys.experiments.compare_personality`
both build on this module; neither imports the other's internals, so there is no circle between them.
A model entry of a compare config is `load_model_spec`'s; `run_one` trains one model with one seed,
keeps its best validation checkpoint and evaluates it on the test truth; `summarize` turns the runs
into the metrics.json block and `point_markdown` into its report section.
"""

from __future__ import annotations

import inspect
import math
import shutil
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from recsys.data.datamodule import InteractionDataModule
from recsys.errors import UserInputError
from recsys.evaluation import EvaluationResult, evaluate
from recsys.evaluation.report import markdown_table
from recsys.evaluation.significance import compare_over_seeds, compare_results

# Data options a model spec may set for itself: how its training batches are drawn, never the data or split.
SAMPLING_KEYS = ("batch_size", "negatives", "sampler", "popularity_exponent")
RESERVED = ("per_seed", "paired_tests", "diagnostics", "sweep", "points", "config")
TEST_METRICS = ("ndcg", "recall")  # metrics the paired tests cover, at every K


@dataclass
class ModelSpec:
    name: str
    model_class: type
    init_args: dict[str, Any]
    sampling: dict[str, Any] = field(default_factory=dict)
    max_epochs: int | None = None  # the spec's own max_epochs: wins over the compare trainer's
    config_max_epochs: int | None = None  # from the fit config: used when the compare trainer sets none


@dataclass
class RunResult:
    result: EvaluationResult
    diagnostics: dict[str, float]
    checkpoint: str = ""  # the kept (best validation) checkpoint, with its test metrics in its prefengine block


# -- configuration ----------------------------------------------------------------------------
def compare_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m recsys compare", exit_on_error=False,
                            description="Train several models over seeds on one split; paired tests and plots.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML file with the options below")
    parser.add_argument("--out", type=str, default="artifacts/compare/default", help="output directory")
    parser.add_argument("--models", type=dict[str, Any], required=True,
                        help="name -> {config: fit YAML} or {class_path, init_args}; optional init_args/data/"
                             "max_epochs overrides. The first model is the one the others are tested against.")
    parser.add_argument("--seeds", type=list[int], default=[0, 1, 2])
    parser.add_argument("--ks", type=list[int], default=[5, 10, 20, 50])
    parser.add_argument("--metric", type=str, default="ndcg@20", help="headline metric (tables, sweep plot)")
    parser.add_argument("--data", type=dict[str, Any], default={}, help="InteractionDataModule arguments")
    parser.add_argument("--sweep", type=dict[str, list[Any]] | None, default=None,
                        help="one data option -> values, e.g. {false_positive_rate: [0, 0.1, 0.2, 0.3]}")
    parser.add_argument("--trainer", type=dict[str, Any], default={},
                        help="pytorch_lightning.Trainer arguments shared by every run (max_epochs: a model's own "
                             "max_epochs wins, then this, then the model's fit config)")
    parser.add_argument("--monitor", type=str, default="valid/ndcg@20", help="validation metric to select by")
    parser.add_argument("--patience", type=int, default=5, help="early stopping: validations without gain")
    return parser


def plain(value: Any) -> Any:
    """jsonargparse hands nested mappings back as Namespaces; models and the DataModule want dicts."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def load_model_spec(name: str, raw: Any) -> ModelSpec:
    """A model entry of the compare config: {config: fit YAML} or {class_path, init_args}, plus overrides."""
    raw = plain(raw)
    if name in RESERVED:
        raise UserInputError(f"compare: '{name}' is reserved and cannot name a model")
    if isinstance(raw, str):
        raw = {"config": raw}
    if not isinstance(raw, dict):
        raise UserInputError(f"compare: model '{name}' must be a mapping (config: path, or class_path/init_args)")
    raw = dict(raw)
    unknown = set(raw) - {"config", "class_path", "init_args", "data", "max_epochs"}
    if unknown:
        raise UserInputError(f"compare: model '{name}' has unknown key(s) {sorted(unknown)}")
    class_path, init_args, sampling, config_max_epochs = None, {}, {}, None
    if "config" in raw:
        path = Path(raw["config"])
        if not path.is_file():
            raise UserInputError(f"compare: model '{name}': config {path} does not exist")
        fit = yaml.safe_load(path.read_text()) or {}
        model = fit.get("model") or {}
        class_path, init_args = model.get("class_path"), dict(model.get("init_args") or {})
        sampling = {k: v for k, v in (fit.get("data") or {}).items() if k in SAMPLING_KEYS}
        config_max_epochs = (fit.get("trainer") or {}).get("max_epochs")
    class_path = raw.get("class_path", class_path)
    init_args.update(raw.get("init_args") or {})
    for linked in ("n_users", "n_items"):  # sizes come from the data (jsonargparse fills them in as None)
        init_args.pop(linked, None)
    extra = raw.get("data") or {}
    bad = set(extra) - set(SAMPLING_KEYS)
    if bad:
        raise UserInputError(f"compare: model '{name}' may only set {', '.join(SAMPLING_KEYS)} under data "
                             f"(all models share the data and split), got {sorted(bad)}")
    sampling.update(extra)
    if not class_path:
        raise UserInputError(f"compare: model '{name}' names no class_path")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        model_class = getattr(import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise UserInputError(f"compare: model '{name}': cannot import {class_path}") from None
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self", "n_users", "n_items"}
    unknown = set(init_args) - accepted
    if unknown:
        raise UserInputError(f"compare: model '{name}': {class_name} has no argument(s) {sorted(unknown)}")
    return ModelSpec(name, model_class, init_args, sampling, raw.get("max_epochs"), config_max_epochs)


# -- one run ----------------------------------------------------------------------------------
def _noise_labels(datamodule: InteractionDataModule) -> np.ndarray | None:
    """Per training positive: True when the world says the user does not like the item (a false positive)."""
    if datamodule.world is None:
        return None
    return ~datamodule.world.truly_liked(datamodule.train_users, datamodule.train_items)


def run_one(datamodule: InteractionDataModule, spec: ModelSpec, seed: int, run_dir: Path, trainer_args: dict,
            monitor: str, patience: int, ks: list[int]) -> RunResult:
    """Train one model with one seed, keep its best validation checkpoint, evaluate it on the test truth."""
    datamodule.configure_sampling(**spec.sampling, sample_seed=seed)
    pl.seed_everything(seed, verbose=False)
    model = spec.model_class(n_users=datamodule.n_users, n_items=datamodule.n_items, **spec.init_args)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a rerun replaces, never versions, the old run
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max")
    # accelerator and devices come from the config's trainer section (trainer_args), as every other trainer key.
    args = {"enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1, **trainer_args}
    if spec.max_epochs is not None:
        args["max_epochs"] = spec.max_epochs
    elif "max_epochs" not in trainer_args and spec.config_max_epochs is not None:
        args["max_epochs"] = spec.config_max_epochs
    trainer = pl.Trainer(default_root_dir=str(run_dir), logger=CSVLogger(str(run_dir), name="logs"),
                         callbacks=[checkpoint, EarlyStopping(monitor=monitor, mode="max", patience=patience)], **args)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
    truth, exclude = datamodule.evaluation_inputs("test")
    result = evaluate(model.scorer, truth=truth, exclude=exclude, ks=tuple(ks))
    if checkpoint.best_model_path:
        from recsys.training.train import store_metrics_in_checkpoint

        store_metrics_in_checkpoint(Path(checkpoint.best_model_path), result.metrics)
    best_epoch = _best_epoch(checkpoint.best_model_path)
    best_score = checkpoint.best_model_score
    diagnostics = {"best_epoch": float(best_epoch), "train_seconds": seconds,
                   "best_valid": float(best_score) if best_score is not None else float("nan")}
    noise = _noise_labels(datamodule)
    if noise is not None and getattr(model, "flip", None) is not None:
        diagnostics["flip_auc"] = model.flip_auc(datamodule.train_users, datamodule.train_items, noise)
        rho = model.flip_probability(torch.as_tensor(datamodule.train_users),
                                     torch.as_tensor(datamodule.train_items)).numpy()
        diagnostics["rho_false_positives"] = float(rho[noise].mean()) if noise.any() else float("nan")
        diagnostics["rho_true_positives"] = float(rho[~noise].mean())
    if getattr(model, "flip", None) is not None:
        for name, (users, items, is_target) in datamodule.flip_contrasts().items():
            # rho = P(observed 0 | liked): the paper's reading, judged where the truth has such pairs
            diagnostics[f"{name}_flip_auc"] = model.flip_auc(users, items, is_target)
            rho = model.flip_probability(torch.as_tensor(users), torch.as_tensor(items)).numpy()
            diagnostics[f"rho_{name}"] = float(rho[is_target].mean())
            diagnostics[f"rho_{name}_contrast"] = float(rho[~is_target].mean())
    return RunResult(result, diagnostics, checkpoint.best_model_path)


def _best_epoch(path: str) -> int:
    if not path:
        return -1
    return int(torch.load(path, map_location="cpu", weights_only=False).get("epoch", -1))


# -- aggregation ------------------------------------------------------------------------------
def mean_result(results: list[EvaluationResult]) -> EvaluationResult:
    """Metrics and per-user vectors averaged over runs that share their truth (same users per split)."""
    first = results[0]
    for other in results[1:]:
        for split, users in first.users.items():
            if not np.array_equal(users, other.users[split]):
                raise ValueError(f"runs evaluated different users on split '{split}'; they cannot be averaged")
    metrics = {key: float(np.mean([r.metrics[key] for r in results])) for key in first.metrics}
    per_user = {key: np.mean([r.per_user[key] for r in results], axis=0) for key in first.per_user}
    return EvaluationResult(metrics=metrics, per_user=per_user, users=first.users, ks=first.ks,
                            counts=first.counts, protocol={**first.protocol, "runs_averaged": len(results)})


def _tested_keys(result: EvaluationResult, ks: list[int]) -> list[str]:
    return [f"{split}/{metric}@{k}" for split in result.splits for metric in TEST_METRICS for k in ks
            if f"{split}/{metric}@{k}" in result.per_user]


def summarize(runs: dict[str, list[RunResult]], ks: list[int]) -> tuple[dict[str, Any], dict[str, EvaluationResult]]:
    """The metrics.json block of one data point, and the seed-averaged result of each model."""
    averaged = {name: mean_result([r.result for r in model_runs]) for name, model_runs in runs.items()}
    block: dict[str, Any] = {name: dict(sorted(result.metrics.items())) for name, result in averaged.items()}
    block["per_seed"] = {name: {key: [r.result.metrics[key] for r in model_runs] for key in averaged[name].metrics}
                         for name, model_runs in runs.items()}
    block["diagnostics"] = {name: {key: [r.diagnostics.get(key, float("nan")) for r in model_runs]
                                   for key in sorted({k for r in model_runs for k in r.diagnostics})}
                            for name, model_runs in runs.items()}
    names = list(runs)
    first = names[0]
    tests: dict[str, Any] = {}
    keys = _tested_keys(averaged[first], ks)
    for other in names[1:]:
        over_users = compare_results(averaged[first], averaged[other], keys=keys)
        over_seeds = {}
        if len(runs[first]) >= 2 and len(runs[first]) == len(runs[other]):
            over_seeds = compare_over_seeds([r.result for r in runs[first]], [r.result for r in runs[other]],
                                            keys=keys)
        tests[other] = {key: {"over_users": over_users[key].as_dict(),
                              **({"over_seeds": over_seeds[key].as_dict()} if key in over_seeds else {})}
                        for key in keys}
    block["paired_tests"] = {"reference": first, "difference": f"{first} minus model", "tests": tests}
    return block, averaged


# -- the report ------------------------------------------------------------------------------
def _fmt(values: list[float]) -> str:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "–"
    mean = float(np.mean(values))
    return f"{mean:.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{mean:.4f}"


def point_markdown(block: dict[str, Any], averaged: dict[str, EvaluationResult], metric: str,
                    seeds: list[int]) -> str:
    names = [n for n in block if n not in RESERVED]
    splits = averaged[names[0]].splits
    lines = [f"Headline `{metric}`, mean ± sd over seeds {seeds}:", "",
             "| model | " + " | ".join(f"{s}/{metric}" for s in splits) + " |", "|---|" + "---|" * len(splits)]
    for name in names:
        cells = [_fmt(block["per_seed"][name].get(f"{s}/{metric}", [])) for s in splits]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tests = block["paired_tests"]["tests"]
    if tests:
        reference = block["paired_tests"]["reference"]
        lines += ["", f"Paired tests, {reference} minus each model (over users: per-user values averaged over "
                      "seeds, paired t-test and 95% bootstrap CI; over seeds: run means):", "",
                  "| model | metric | difference | 95% CI | p (users) | p (seeds) |", "|---|---|---|---|---|---|"]
        for other, per_key in tests.items():
            for key in [f"{s}/{metric}" for s in splits]:
                if key not in per_key:
                    continue
                users = per_key[key]["over_users"]
                seeds_p = per_key[key].get("over_seeds", {}).get("p_value", float("nan"))
                lines.append(f"| {other} | {key} | {users['mean_difference']:+.4f} | "
                             f"[{users['ci_low']:+.4f}, {users['ci_high']:+.4f}] | {users['p_value']:.2g} | "
                             f"{seeds_p:.2g} |")
    for name, what in (("hidden", "hidden likes (liked, exposed, never observed) vs pairs neither observed nor liked"),
                       ("hidden_vs_heldout", "hidden likes vs the liked pairs observed in valid and test"),
                       ("withheld", "withheld training pairs vs pairs with no interaction")):
        diagnostics = {n: d for n, d in block["diagnostics"].items() if f"{name}_flip_auc" in d}
        if diagnostics:
            lines += ["", f"Learned flip probability rho = P(observed 0 | liked) on {what}:", "",
                      f"| model | AUC | mean rho, {name} | mean rho, contrast |", "|---|---|---|---|"]
            for model, d in diagnostics.items():
                lines.append(f"| {model} | {_fmt(d[f'{name}_flip_auc'])} | {_fmt(d[f'rho_{name}'])} | "
                             f"{_fmt(d[f'rho_{name}_contrast'])} |")
    diagnostics = {n: d for n, d in block["diagnostics"].items()
                   if "flip_auc" in d and not all(math.isnan(v) for v in d["flip_auc"])}
    if diagnostics:
        lines += ["", "Learned flip probability rho on the training positives as a false-positive detector "
                      "(our extension: NBPO's likelihood takes observed positives as clean):", "",
                  "| model | AUC | mean rho on false positives | mean rho on true positives |", "|---|---|---|---|"]
        for name, d in diagnostics.items():
            lines.append(f"| {name} | {_fmt(d['flip_auc'])} | {_fmt(d['rho_false_positives'])} | "
                         f"{_fmt(d['rho_true_positives'])} |")
    lines += ["", "<details><summary>All metrics (seed means)</summary>", "", markdown_table(averaged), "</details>"]
    return "\n".join(lines) + "\n"
