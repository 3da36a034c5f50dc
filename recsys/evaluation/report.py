"""Evaluation results for people: metrics.json, a Markdown table and PNG plots.

Plots are drawn with matplotlib's object API (`Figure`), which renders PNG without a display
or a pyplot backend, so reports can be written from tests, servers and batch jobs alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from recsys.evaluation.evaluator import METRIC_NAMES, EvaluationResult

DEFAULT_PLOT_METRICS = ("recall", "precision", "ndcg", "map", "mrr", "hit_rate")


def _as_models(results: EvaluationResult | Mapping[str, EvaluationResult]) -> dict[str, EvaluationResult]:
    return {"model": results} if isinstance(results, EvaluationResult) else dict(results)


def _parse_key(key: str) -> tuple[str, str, int]:
    """'test/recall@10' -> ('test', 'recall', 10)."""
    split, rest = key.split("/", 1)
    metric, k = rest.rsplit("@", 1)
    return split, metric, int(k)


def _sampled_note(models: Mapping[str, EvaluationResult]) -> str:
    sampled = {name: r.protocol for name, r in models.items() if r.protocol.get("ranking") == "sampled"}
    if not sampled:
        return ""
    details = ", ".join(f"{name}: {p.get('negatives')} negatives, seed {p.get('seed')}" for name, p in sampled.items())
    return (f"**Sampled ranking** ({details}): each user's relevant items are ranked among sampled negatives, "
            "not all items; these numbers are not comparable with full-ranking numbers.\n\n")


def markdown_table(results: EvaluationResult | Mapping[str, EvaluationResult],
                   metrics: Sequence[str] = METRIC_NAMES, digits: int = 4) -> str:
    """One row per (model, split, metric), one column per cut-off K."""
    models = _as_models(results)
    ks = sorted({k for r in models.values() for k in r.ks})
    show_model = not isinstance(results, EvaluationResult)
    head = (["model"] if show_model else []) + ["split", "metric"] + [f"@{k}" for k in ks]
    lines = [_sampled_note(models) + "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in models.items():
        for split in result.splits:
            users = result.counts.get(split, {}).get("users", len(result.users.get(split, ())))
            for metric in metrics:
                cells = [result.metrics.get(f"{split}/{metric}@{k}") for k in ks]
                if all(c is None for c in cells):
                    continue
                row = ([name] if show_model else []) + [f"{split} ({users:,} users)", metric]
                row += ["" if c is None else f"{c:.{digits}f}" for c in cells]
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_metric_vs_k(results: EvaluationResult | Mapping[str, EvaluationResult], path: Path,
                     metrics: Sequence[str] = DEFAULT_PLOT_METRICS) -> Path:
    """One panel per metric: the metric against K, one line per (model, split)."""
    models = _as_models(results)
    metrics = [m for m in metrics if any(_parse_key(key)[1] == m for r in models.values() for key in r.metrics)]
    columns = min(3, max(1, len(metrics)))
    rows = int(np.ceil(len(metrics) / columns)) or 1
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics):
        for name, result in models.items():
            for split in result.splits:
                points = sorted((k, result.metrics[f"{split}/{metric}@{k}"]) for k in result.ks
                                if f"{split}/{metric}@{k}" in result.metrics)
                label = f"{name} {split}" if len(models) > 1 else split
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set_title(metric)
        ax.set_xlabel("K")
        ax.set_xticks(sorted({k for r in models.values() for k in r.ks}))
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if metrics:
        axes[0].legend(fontsize="small")
    return _save(figure, path)


def plot_metric_vs_param(series: Mapping[str, Mapping[float, float | Sequence[float]]], path: Path,
                         param: str, metric: str, title: str | None = None) -> Path:
    """A metric against a parameter (e.g. ndcg@20 vs noise rate) for several models.

    `series` maps model -> {parameter value -> value, or values over seeds}. With several values
    a point is their mean and the bar spans one standard deviation either side.
    """
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = figure.subplots()
    runs = 1
    for name, points in series.items():
        xs = sorted(points)
        values = [np.atleast_1d(np.asarray(points[x], dtype=np.float64)) for x in xs]
        runs = max(runs, *(len(v) for v in values))
        means = [v.mean() for v in values]
        spreads = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]
        ax.errorbar(xs, means, yerr=spreads, marker="o", capsize=3, label=name)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    subtitle = f" (mean ± 1 sd over {runs} runs)" if runs > 1 else ""
    ax.set_title((title or f"{metric} vs {param}") + subtitle, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write_report(results: EvaluationResult | Mapping[str, EvaluationResult], out_dir: Path,
                 title: str = "Evaluation", plot_metrics: Sequence[str] = DEFAULT_PLOT_METRICS) -> dict[str, Path]:
    """Write metrics.json, evaluation.json, report.md and metric_vs_k.png into `out_dir`.

    metrics.json holds the flat "<split>/<metric>@<k>" dict (for several models: model -> that
    dict); evaluation.json adds the per-split user counts and the protocol.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = _as_models(results)
    single = isinstance(results, EvaluationResult)
    flat = results.metrics if single else {name: r.metrics for name, r in models.items()}
    details = results.to_dict() if single else {name: r.to_dict() for name, r in models.items()}
    paths = {"metrics": out / "metrics.json", "evaluation": out / "evaluation.json",
             "table": out / "report.md", "plot": out / "metric_vs_k.png"}
    paths["metrics"].write_text(json.dumps(flat, indent=2) + "\n")
    paths["evaluation"].write_text(json.dumps(details, indent=2) + "\n")
    protocol = next(iter(models.values())).protocol
    paths["table"].write_text(f"# {title}\n\n{_protocol_line(protocol)}\n\n{markdown_table(results)}")
    plot_metric_vs_k(results, paths["plot"], plot_metrics)
    return paths


def _protocol_line(protocol: Mapping) -> str:
    ranking = {"full": "full ranking over all items", "sampled": "SAMPLED ranking",
               "lists": "lists from an outside system"}.get(protocol.get("ranking"), "ranking")
    return (f"Protocol: {ranking}; each user's excluded items masked; {protocol.get('ties', '')}; "
            "users with at least one relevant item count; values are means over users.")
