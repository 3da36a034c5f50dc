"""The personality comparison swept over one data option, e.g. how strongly the world's traits shape tastes.

    python -m recsys compare -c configs/recsys/compare_traits_sweep.yaml --out DIR

`sweep: {trait_influence: [0, 0.2, 0.4, 0.8]}` runs the whole personality comparison once per
value (`recsys.experiments.compare_personality.run_comparison`, written to DIR/<option>=<value>/). The option
is a data option, or a preference-world field (set through `data.world_options`). Only the world's
tastes change between points: the population, catalog and split draw the same random numbers.

DIR/metrics.json: {"sweep": {parameter, values}, "points": {label: the comparison's finding and
per-seed cold-user click AUC of both models}, "control": ..., "trend": ...}:

- control (when the sweep includes 0 of `trait_influence`): traits cannot help where they do not
  shape taste, so the cold-user gain there must not be significantly positive (paired over cold
  users, p < 0.05) — a positive gain would be a leak (e.g. a feature that carries the user, or
  demographics that traits stand in for), not a finding;
- trend: least-squares slope of the per-seed cold-user click AUC gain on the option's value, with
  its two-sided p-value (scipy.stats.linregress over every (value, seed) pair), and whether the
  per-point mean gains never decrease.

DIR/report.md has one row per point; DIR/cold_gain_vs_<option>.png plots the gain with its 95% CI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import UserInputError

CONTROL_PARAMETER = "trait_influence"
ALPHA = 0.05


def with_value(data: dict[str, Any], parameter: str, value: Any) -> dict[str, Any]:
    """The data options with `parameter` set: a PersonalityDataModule option, else a world field."""
    import inspect

    from recsys.data.datamodule import InteractionDataModule
    from recsys.data.personality_datamodule import PersonalityDataModule
    from recsys.data.world import WorldConfig

    options = {name for cls in (PersonalityDataModule, InteractionDataModule)
               for name in inspect.signature(cls.__init__).parameters}
    data = dict(data)
    if parameter in options:
        data[parameter] = value
    elif parameter in {f.name for f in fields(WorldConfig)}:
        data["world_options"] = {**(data.get("world_options") or {}), parameter: value}
        WorldConfig.preset(data.get("world_preset", "small"), **data["world_options"])  # a bad value fails now
    else:
        raise UserInputError(f"compare: sweep option {parameter!r} is neither a data option nor a preference-world "
                             "field (recsys.data.world.WorldConfig)")
    return data


def _point(block: dict[str, Any], reference: str, baseline: str) -> dict[str, Any]:
    verdict = block["finding"]
    per_seed = block["pointwise"]["per_seed"]
    tests = block["pointwise"]["paired_tests"]["tests"][baseline]
    over_users = tests.get("test_cold/user_auc", {}).get("over_users", {})
    ref, base = per_seed[reference]["test_cold/auc"], per_seed[baseline]["test_cold/auc"]
    return {"cold_click_auc": {reference: ref, baseline: base},
            "cold_click_auc_gain_per_seed": [a - b for a, b in zip(ref, base)],
            "cold_user_auc_gain_ci_users": [over_users.get("ci_low", float("nan")),
                                            over_users.get("ci_high", float("nan"))],
            "finding": verdict, "users": block["users"]}


def control_verdict(point: dict[str, Any]) -> dict[str, Any]:
    """Traits must not help cold users where they do not shape taste: no significantly positive gain."""
    verdict = point["finding"]
    gain, p = verdict["cold_user_auc_gain"], verdict["cold_user_auc_gain_p_users"]
    positive = bool(np.isfinite(p) and gain > 0 and p < ALPHA)
    return {"cold_user_auc_gain": gain, "p_users": p, "ci_users": point["cold_user_auc_gain_ci_users"],
            "cold_click_auc_gain": verdict["cold_click_auc_gain"],
            "holds": not positive,
            "rule": f"per-user cold AUC gain (traits minus no traits) not positive with p < {ALPHA} over cold users"}


def trend(values: list[float], gains_per_seed: list[list[float]]) -> dict[str, Any]:
    """Slope of the per-seed gains on the swept value, and whether the mean gain never decreases."""
    from scipy.stats import linregress

    x = np.concatenate([[v] * len(g) for v, g in zip(values, gains_per_seed)]).astype(float)
    y = np.concatenate(gains_per_seed).astype(float)
    means = [float(np.mean(g)) for g in gains_per_seed]
    out = {"mean_gain": means, "non_decreasing": bool(np.all(np.diff(means) >= 0))}
    if len(set(x)) >= 2 and len(x) >= 3:
        fit = linregress(x, y)
        out.update(slope=float(fit.slope), slope_p=float(fit.pvalue),
                   grows=bool(fit.slope > 0 and fit.pvalue < ALPHA))
    return out


def plot_gain(values: list[float], points: list[dict[str, Any]], parameter: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gains = [p["finding"]["cold_user_auc_gain"] for p in points]
    low = [g - p["cold_user_auc_gain_ci_users"][0] for g, p in zip(gains, points)]
    high = [p["cold_user_auc_gain_ci_users"][1] - g for g, p in zip(gains, points)]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.errorbar(values, gains, yerr=[low, high], marker="o", capsize=3, label="per-user AUC gain (95% CI, users)")
    axis.plot(values, [np.mean(p["cold_click_auc_gain_per_seed"]) for p in points], "s--", label="click AUC gain")
    axis.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlabel(parameter)
    axis.set_ylabel("cold-user gain, traits minus no traits")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run_sweep(config, specs, run_comparison: Callable[..., dict[str, Any]]) -> int:
    sweep = config.sweep
    if len(sweep) != 1:
        raise UserInputError(f"compare: sweep one data option at a time, got {sorted(sweep)}")
    parameter, values = next(iter(sweep.items()))
    if not values:
        raise UserInputError(f"compare: sweep over {parameter} lists no values")
    reference = specs[0].name
    baseline = config.finding.get("baseline", specs[1].name)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    datas = [with_value(dict(config.data), parameter, value) for value in values]  # every value checked first
    points: dict[str, dict[str, Any]] = {}
    for value, data in zip(values, datas):
        label = f"{parameter}={value}"
        points[label] = _point(run_comparison(config, specs, data, out / label), reference, baseline)
    ordered = list(points.values())
    payload: dict[str, Any] = {"sweep": {"parameter": parameter, "values": list(values)}, "points": points,
                               "trend": trend([float(v) for v in values],
                                              [p["cold_click_auc_gain_per_seed"] for p in ordered])}
    if parameter == CONTROL_PARAMETER and 0 in values:
        payload["control"] = control_verdict(points[f"{parameter}={values[values.index(0)]}"])
    payload["config"] = {"models": [s.name for s in specs], "reference": reference, "baseline": baseline,
                         "seeds": list(config.seeds), "data": dict(config.data), "trainer": dict(config.trainer),
                         "monitor": config.monitor, "patience": config.patience}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    plot = plot_gain([float(v) for v in values], ordered, parameter, out / f"cold_gain_vs_{parameter}.png")
    (out / "report.md").write_text(report(payload, reference, baseline, plot.name))
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0


def report(payload: dict[str, Any], reference: str, baseline: str, plot: str) -> str:
    parameter = payload["sweep"]["parameter"]
    lines = [f"# Personality comparison over {parameter}: {reference} minus {baseline}, cold users", "",
             f"| {parameter} | cold click AUC {reference} | cold click AUC {baseline} | click AUC gain (seeds) | "
             "per-user AUC gain [95% CI] | p (users) | p (seeds) |", "|---|---|---|---|---|---|---|"]
    for value, point in zip(payload["sweep"]["values"], payload["points"].values()):
        v = point["finding"]
        low, high = point["cold_user_auc_gain_ci_users"]
        lines.append(f"| {value} | {np.mean(point['cold_click_auc'][reference]):.4f} | "
                     f"{np.mean(point['cold_click_auc'][baseline]):.4f} | {v['cold_click_auc_gain']:+.4f} | "
                     f"{v['cold_user_auc_gain']:+.4f} [{low:+.4f}, {high:+.4f}] | "
                     f"{v['cold_user_auc_gain_p_users']:.2g} | {v['cold_click_auc_gain_p_seeds']:.2g} |")
    t = payload["trend"]
    lines += ["", f"Trend: slope of the per-seed gain on {parameter} {t.get('slope', float('nan')):+.4f} "
                  f"(p {t.get('slope_p', float('nan')):.2g}); mean gain never decreases: {t['non_decreasing']}."]
    if "control" in payload:
        c = payload["control"]
        lines += ["", f"Negative control ({parameter} 0, traits shape no taste): per-user gain "
                      f"{c['cold_user_auc_gain']:+.4f}, p {c['p_users']:.2g} — "
                      f"{'holds (traits do not help)' if c['holds'] else 'FAILS: traits help where they cannot'}."]
    lines += ["", f"![cold-user gain vs {parameter}]({plot})", ""]
    return "\n".join(lines)
