"""The preference-discerning benchmark for people: a Markdown report and a bar plot per axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

AXIS_TITLES = {
    "recommendation": "1. preference-based recommendation",
    "fine_steering": "2. fine-grained steering",
    "coarse_steering": "3. coarse-grained steering",
    "sentiment": "4. sentiment following",
    "consolidation": "5. history consolidation",
}


def _title(axis: str) -> str:
    """Row titles of the tables: the sentiment rows score positive preferences (the other half is below)."""
    title = AXIS_TITLES.get(axis, axis)
    return title + " (positive preferences)" if axis == "sentiment" else title


def _cell(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"


def report_markdown(metrics: dict, details: dict, ks: Sequence[int]) -> str:
    """Per axis: each variant's Recall@K / NDCG@K, and Mender minus TIGER where both ran."""
    variants = list(metrics)
    columns = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    lines = ["# Preference discerning: TIGER vs Mender", ""]
    lines += ["| axis | variant | queries | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 3)]
    axes = [a for a in AXIS_TITLES if any(a in metrics[v] for v in variants)]
    for axis in axes:
        for variant in variants:
            row = metrics[variant].get(axis)
            if row is None:
                continue
            cells = [_cell(row.get(c)) for c in columns]
            lines.append(f"| {_title(axis)} | {variant} | {int(row.get('queries', 0)):,} | " + " | ".join(cells) + " |")
        if {"tiger", "mender"} <= set(variants) and axis in metrics["tiger"] and axis in metrics["mender"]:
            diff = [_cell(metrics["mender"][axis].get(c, np.nan) - metrics["tiger"][axis].get(c, np.nan))
                    for c in columns]
            lines.append(f"| {_title(axis)} | mender - tiger | | " + " | ".join(diff) + " |")
    comparisons = [("Mender minus TIGER", details["mender_vs_tiger"])] if details.get("mender_vs_tiger") else []
    comparisons += [(f"{variant} minus Mender", per) for variant, per in details.get("vs_mender", {}).items()]
    if details.get("tiger_sdpo_vs_tiger"):
        comparisons.append(("TIGER + S-DPO minus TIGER", details["tiger_sdpo_vs_tiger"]))
    for heading, comparison in comparisons:
        lines += ["", f"## {heading}, paired over the same queries", "",
                  "Difference of hit rates (Recall@K with one relevant item; for sentiment also the negative "
                  "preference's kept-out rate and the combined score), paired t-test p-value and bootstrap "
                  "95% confidence interval.", "",
                  "| axis | metric@K | queries | difference | 95% CI | p |", "|---|---|---|---|---|---|"]
        for axis, per_k in comparison.items():
            for key, row in per_k.items():
                lines.append(f"| {_title(axis)} | {key} | {int(row['n']):,} | "
                             f"{row['mean_difference']:+.4f} | [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | "
                             f"{row['p_value']:.2g} |")
    sentiment = {v: metrics[v]["sentiment"] for v in variants if "sentiment" in metrics[v]}
    if sentiment:
        lines += ["", "## Sentiment following", "",
                  "Positive preference: the item should come back (recall); negative preference: it should stay "
                  "out (kept out); combined: both for the same item.", ""]
        cols = [f"{m}@{k}" for k in ks for m in ("recall", "negative_kept_out", "combined")]
        lines += ["| variant | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for variant, row in sentiment.items():
            lines.append(f"| {variant} | " + " | ".join(_cell(row.get(c)) for c in cols) + " |")
    if "extractor" in details:
        e = details["extractor"]
        lines += ["", "## Preferences", "",
                  f"Extractor `{e['name']}`: {int(e['contexts']):,} (user, step) contexts, "
                  f"{int(e['distinct_sentences']):,} distinct sentences, {e['mean_preferences']:.2f} per context; "
                  f"direction precision against true utilities {_cell(e['direction_precision'])}, "
                  f"recall of stated preferences {_cell(e['stated_recall'])}."]
    if "semantic_ids" in details:
        s = details["semantic_ids"]
        usage = s.get("codebook_usage")
        lines += ["", "## Semantic IDs", "", f"Source: {s['source']}; collision rate {_cell(s['collision_rate'])} "
                  f"(largest group {int(s['max_group'])})"
                  + (f"; reconstruction loss {_cell(s['reconstruction_loss'])}; codebook usage per level "
                     + ", ".join(f"{u:.3f}" for u in usage) if usage else "") + "."]
    return "\n".join(lines) + "\n"


def plot_axes(metrics: dict, path: Path, k: int) -> Path:
    """Recall@k and NDCG@k per retrieval axis (one bar per variant), and sentiment following on its own panel:
    positive preferences should retrieve the item, negative ones keep it out, combined is both at once."""
    variants = list(metrics)
    axes = [a for a in AXIS_TITLES if a != "sentiment" and any(a in metrics[v] for v in variants)]
    has_sentiment = any("sentiment" in metrics[v] for v in variants)
    figure = Figure(figsize=(max(7.0, 2.2 * len(axes) + 3.0), 6.5))
    grid = figure.add_gridspec(2, 2 if has_sentiment else 1, width_ratios=[len(axes), 2] if has_sentiment else None)
    width = 0.8 / max(1, len(variants))

    def bars(ax, labels, values_of):
        x = np.arange(len(labels))
        for j, variant in enumerate(variants):
            drawn = ax.bar(x + (j - (len(variants) - 1) / 2) * width, values_of(variant), width, label=variant)
            ax.bar_label(drawn, fmt="%.3f", fontsize=7)
        ax.set_xticks(x, labels, fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    for row, metric in enumerate(("recall", "ndcg")):
        ax = figure.add_subplot(grid[row, 0])
        bars(ax, [AXIS_TITLES[a].split(". ", 1)[1].replace(" ", "\n", 1) for a in axes],
             lambda v, metric=metric: [metrics[v].get(a, {}).get(f"{metric}@{k}", np.nan) for a in axes])
        ax.set_ylabel(f"{metric}@{k}")
        if row == 0:
            ax.set_title("Preference discerning")
            ax.legend()
    if has_sentiment:
        ax = figure.add_subplot(grid[:, 1])
        keys = [f"recall@{k}", f"negative_kept_out@{k}", f"combined@{k}"]
        bars(ax, ["positive:\nretrieved", "negative:\nkept out", "combined"],
             lambda v: [metrics[v].get("sentiment", {}).get(key, np.nan) for key in keys])
        ax.set_title(f"4. sentiment following (@{k})")
        ax.set_ylim(0, 1.05)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
