"""`python -m recsys compare -c configs/recsys/compare_noisy.yaml --out DIR`: several models, several seeds, one split.

Every model trains on the same data and the same split (fixed by `data.seed`); a run's seed sets
the model's initialization and its negative draws. Each run keeps the checkpoint with the best
validation metric (early stopping on `monitor`) and is then evaluated on the test split with the
full-ranking evaluator (and on the clean labels and the hidden likes when the data is the
preference world, and on the withheld training pairs with data.hide_positives; see
`InteractionDataModule.evaluation_inputs`).

Written to DIR:
- metrics.json: {model: {metric: mean over seeds}, "per_seed": {model: {metric: [...]}},
  "paired_tests": {model: {metric: {"over_users": ..., "over_seeds": ...}}} (the first model
  minus each other model: per-user values averaged over seeds, paired over users; and run means
  paired over seeds), "diagnostics": {model: {best_epoch, best_valid (the monitored validation
  value of the kept checkpoint), train_seconds, and for NBPO on the
  world flip_auc (AUC of the learned rho for telling injected false positives from true
  positives among the training positives: our extension, not the paper's reading of rho) and
  hidden_flip_auc (AUC of rho for telling hidden likes, liked but never observed, from pairs
  neither observed nor liked: the paper's reading, rho = P(observed 0 | liked)),
  hidden_vs_heldout_flip_auc (hidden likes vs the liked pairs observed in valid and test); with
  data.hide_positives, withheld_flip_auc (withheld training pairs vs pairs with no interaction)}}}. With a `sweep` (one data option, several values)
  the file is {"sweep": {...}, "points": {value: that block}}.
- report.md, metric_vs_k*.png, and with a sweep metric_vs_<option>.png.
- runs/<point>/<model>/seed<k>/: checkpoints, logs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from tqdm.auto import tqdm

from recsys.data.datamodule import InteractionDataModule
from recsys.errors import UserInputError
from recsys.evaluation.report import plot_metric_vs_k, plot_metric_vs_param
from recsys.experiments.runs import (
    RunResult,
    compare_parser,
    load_model_spec,
    plain,
    point_markdown,
    run_one,
    summarize,
)

log = logging.getLogger(__name__)


# -- main --------------------------------------------------------------------------------------
def _experiment_of(argv: list[str]) -> str | None:
    """The `experiment:` key of the config given with -c/--config, if any (experiments other than the
    default noisy-label comparison have their own module and schema)."""
    for flag, path in zip(argv, argv[1:]):
        if flag in ("-c", "--config") and Path(path).is_file():
            loaded = yaml.safe_load(Path(path).read_text())
            return loaded.get("experiment") if isinstance(loaded, dict) else None
    return None


def main(argv: list[str]) -> int:
    if _experiment_of(argv) == "pluralistic":
        from recsys.experiments.compare_pluralistic import main as compare_pluralistic

        return compare_pluralistic(argv)
    if _experiment_of(argv) == "personality":
        from recsys.experiments.compare_personality import main as compare_personality

        return compare_personality(argv)
    from recsys.training.train import log_to_console, quiet_lightning_warnings

    log_to_console()
    quiet_lightning_warnings()
    try:
        config = compare_parser().parse_args(argv)
    except ArgumentError as error:
        from recsys.training.train import _one_line

        raise UserInputError(f"compare: {_one_line(error)}") from None
    for key in ("models", "data", "sweep", "trainer"):
        config[key] = plain(config[key])
    specs = [load_model_spec(name, raw) for name, raw in config.models.items()]
    if not specs:
        raise UserInputError("compare: give at least one model under 'models'")
    if not config.seeds:
        raise UserInputError("compare: give at least one seed")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep = config.sweep or {}
    if len(sweep) > 1:
        raise UserInputError(f"compare: sweep one data option at a time, got {sorted(sweep)}")
    param, values = next(iter(sweep.items())) if sweep else (None, [None])
    if param is not None and not values:
        raise UserInputError(f"compare: sweep over {param} lists no values")
    # Lightning reports every run's setup at INFO; keep the console to the progress bar.
    for noisy in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    points: dict[str, Any] = {}
    sweep_series: dict[str, dict[str, dict[float, list[float]]]] = {}
    markdown = [f"# Comparison: {', '.join(s.name for s in specs)}", "",
                f"Models: {', '.join(s.name for s in specs)}; seeds {list(config.seeds)}; selection by "
                f"`{config.monitor}` (early stopping, patience {config.patience}); test evaluation by full ranking "
                "over all items with training and validation items masked.", ""]
    progress = tqdm(total=len(values) * len(specs) * len(config.seeds), desc="compare", unit="run")
    for value in values:
        data_args = dict(config.data)
        label = "all"
        if param is not None:
            data_args[param] = value
            label = f"{param}={value}"
        datamodule = InteractionDataModule(**data_args)
        runs: dict[str, list[RunResult]] = {}
        for spec in specs:
            runs[spec.name] = []
            for seed in config.seeds:
                progress.set_postfix_str(f"{label} {spec.name} seed {seed}")
                run_dir = out / "runs" / label / spec.name / f"seed{seed}"
                runs[spec.name].append(run_one(datamodule, spec, seed, run_dir, dict(config.trainer),
                                               config.monitor, config.patience, list(config.ks)))
                progress.update()
        block, averaged = summarize(runs, list(config.ks))
        points[label] = block
        suffix = "" if param is None else f"_{param}={value}"
        plot_metric_vs_k(averaged, out / f"metric_vs_k{suffix}.png", metrics=("ndcg", "recall", "precision", "mrr"))
        heading = f"## {label}\n\n" if param is not None else ""
        markdown += [heading + f"Data: {datamodule.split.train.describe()}; {datamodule.split.describe()}.", "",
                     point_markdown(block, averaged, config.metric, list(config.seeds)),
                     f"![metric vs K](metric_vs_k{suffix}.png)", ""]
        if param is not None:
            for spec in specs:
                for split in averaged[spec.name].splits:
                    key = f"{split}/{config.metric}"
                    if key in averaged[spec.name].metrics:
                        sweep_series.setdefault(split, {}).setdefault(spec.name, {})[float(value)] = \
                            block["per_seed"][spec.name][key]
    progress.close()

    payload: dict[str, Any] = points["all"] if param is None else {
        "sweep": {"parameter": param, "values": list(values)}, "points": points}
    payload["config"] = {"models": {s.name: {"class_path": f"{s.model_class.__module__}.{s.model_class.__name__}",
                                             "init_args": s.init_args, "data": s.sampling,
                                             "max_epochs": s.max_epochs or config.trainer.get("max_epochs")
                                             or s.config_max_epochs} for s in specs},
                         "seeds": list(config.seeds), "data": dict(config.data), "trainer": dict(config.trainer),
                         "monitor": config.monitor, "patience": config.patience, "ks": list(config.ks)}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    for split, series in sweep_series.items():
        path = out / f"metric_vs_{param}_{split}.png"
        plot_metric_vs_param(series, path, param=param, metric=f"{split}/{config.metric}")
        markdown += [f"![{split}/{config.metric} vs {param}]({path.name})", ""]
    (out / "report.md").write_text("\n".join(markdown))
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0
