"""Knox et al. (TMLR 2024) on real people: which preference model makes the humans' own labels more likely?

    python -m agents experiment human-likelihood --data ../shared/data/delivery-human-prefs --out DIR

Reads each condition's segment-pair features and labels, `<condition>_X.npy` and `<condition>_Y.npy`
(also the authors' names, `<condition>_full_filtered_{X,Y}.npy`): X[i] = [difference in partial return,
difference in start-state value, difference in end-state value] of pair i, Y[i] in {0, 0.5, 1} the
person's preference (0.5 = no preference). Each model is the authors' one-parameter logistic
P(first preferred) = sigmoid(w z):

    partial return:  z = X[:, 0]
    regret:          z = X[:, 0] + X[:, 2] - X[:, 1]   (the negated regret difference)

with w from the authors' grid (w = +-0.01 * 1.236^i, i = 1..25, and 0). The score is the mean
cross-entropy over all labels, a 0.5 label counting half each way; the uniform model (w = 0) scores
log 2 = 0.6931. Reported per condition: the in-sample minimum over the grid (the authors' number),
the cross-validated held-out mean cross-entropy (w chosen on the training folds only), and a paired
bootstrap over labels of regret minus partial return for both.

Writes DIR/results.json, DIR/report.md and DIR/human_likelihood.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from recsys.errors import DataFormatError, UserInputError

MODELS = ("partial_return", "regret")
# The authors' grid: 0 and +-0.01 * 1.236^i for i = 1..25 (51 values).
GRID = np.array([0.0] + [sign * 0.01 * 1.236**i for i in range(1, 26) for sign in (1.0, -1.0)])
UNIFORM = float(np.log(2.0))
LABELS = (0.0, 0.5, 1.0)
FEATURES = ("partial_return_difference", "start_value_difference", "end_value_difference")
CONTROLS = ("Privileged-Control", "Question-Control", "Trained-Control")


# --- data ------------------------------------------------------------------------------------------
def condition_files(data: Path, condition: str) -> tuple[Path, Path]:
    """The condition's X and Y files: the shared layout `<c>_X.npy` or the authors' `<c>_full_filtered_X.npy`."""
    for stem in (condition, f"{condition}_full_filtered"):
        x, y = data / f"{stem}_X.npy", data / f"{stem}_Y.npy"
        if x.exists() or y.exists():
            return x, y
    raise UserInputError(f"{data}: no {condition}_X.npy / {condition}_Y.npy (nor {condition}_full_filtered_X.npy)")


def find_conditions(data: Path) -> list[str]:
    """Every condition with an X file in `data`, controls first."""
    if not data.is_dir():
        raise UserInputError(f"--data {data}: not a directory")
    names = {p.name.removesuffix("_X.npy").removesuffix("_full_filtered") for p in data.glob("*_X.npy")}
    if not names:
        raise UserInputError(f"{data}: no <condition>_X.npy files")
    return sorted(names, key=lambda n: (n not in CONTROLS, n))


def _read_array(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataFormatError(path, "file is missing")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataFormatError(path, f"not a numeric .npy array ({error})") from None


def load_condition(data: Path, condition: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, 3) float64, Y (n,) float64), checked: shapes agree, values finite, labels in {0, 0.5, 1}."""
    x_path, y_path = condition_files(data, condition)
    X, Y = _read_array(x_path), _read_array(y_path)
    if X.ndim != 2 or X.shape[1] != 3:
        raise DataFormatError(x_path, f"expected shape (n, 3) = {list(FEATURES)}, got {X.shape}")
    if Y.ndim != 1:
        raise DataFormatError(y_path, f"expected shape (n,) of labels, got {Y.shape}")
    if len(X) != len(Y):
        raise DataFormatError(y_path, f"{len(Y)} labels for {len(X)} rows of {x_path.name}")
    if len(Y) == 0:
        raise DataFormatError(y_path, "no labels")
    try:
        X, Y = X.astype(np.float64), Y.astype(np.float64)
    except (TypeError, ValueError):
        raise DataFormatError(x_path, f"not numeric (dtypes {X.dtype}, {Y.dtype})") from None
    bad_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad_rows):
        row = int(bad_rows[0])
        field = FEATURES[int(np.flatnonzero(~np.isfinite(X[row]))[0])]
        raise DataFormatError(x_path, f"row {row}: non-finite value in {X[row].tolist()}", field=field)
    bad_labels = np.flatnonzero(~np.isin(Y, LABELS))
    if len(bad_labels):
        row = int(bad_labels[0])
        raise DataFormatError(y_path, f"row {row}: label {float(Y[row]):g} is not one of 0, 0.5, 1")
    return X, Y


# --- the models ------------------------------------------------------------------------------------
def statistic(X: np.ndarray, model: str) -> np.ndarray:
    """z of each pair: the partial-return difference, or the negated regret difference."""
    if model == "partial_return":
        return X[:, 0]
    if model == "regret":
        return X[:, 0] + X[:, 2] - X[:, 1]
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def label_losses(z: np.ndarray, y: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    """Cross-entropy of each label under P = sigmoid(w z): y (-log P) + (1 - y) (-log (1 - P)).

    w may be a vector (the grid): the result is then (len(w), n). log(1 + e^x) is computed stably."""
    logits = np.multiply.outer(np.asarray(w, dtype=np.float64), z)
    return y * np.logaddexp(0.0, -logits) + (1.0 - y) * np.logaddexp(0.0, logits)


def fit_on_grid(z: np.ndarray, y: np.ndarray, grid: np.ndarray = GRID) -> tuple[float, float]:
    """(w, mean cross-entropy) at the grid's minimum (the first one on ties)."""
    means = label_losses(z, y, grid).mean(axis=1)
    best = int(np.argmin(means))
    return float(grid[best]), float(means[best])


def fold_ids(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A random fold index per label, folds as equal as n allows."""
    return rng.permutation(np.arange(n) % folds)


def held_out_losses(z: np.ndarray, y: np.ndarray, folds: np.ndarray, grid: np.ndarray = GRID) -> tuple[np.ndarray, list[float]]:
    """Each label's cross-entropy under the w chosen on the other folds; and the w of each fold."""
    losses = np.empty(len(y))
    chosen = []
    for fold in np.unique(folds):
        test = folds == fold
        w, _ = fit_on_grid(z[~test], y[~test], grid)
        losses[test] = label_losses(z[test], y[test], w)
        chosen.append(w)
    return losses, chosen


def bootstrap_counts(n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, n) resampling counts of n labels (each row sums to n)."""
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)]).astype(np.float64)


def interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def analyze_condition(X: np.ndarray, Y: np.ndarray, folds: int, bootstrap: int, seed: int) -> dict:
    """In-sample grid minima, held-out cross-entropy and the paired bootstraps of one condition."""
    rng = np.random.default_rng(seed)
    n = len(Y)
    fold_of = fold_ids(n, folds, rng)
    counts = bootstrap_counts(n, bootstrap, rng)  # the same resamples for both models: a paired bootstrap
    result: dict = {"labels": n, "label_counts": {f"{v:g}": int(np.sum(Y == v)) for v in LABELS}}
    boot_in, boot_out, out_losses = {}, {}, {}
    for model in MODELS:
        z = statistic(X, model)
        grid_losses = label_losses(z, Y, GRID)  # (grid, n)
        w, in_sample = fit_on_grid(z, Y)
        # in-sample minimum of each resample: w re-picked on the resample, as the statistic is defined
        boot_in[model] = (grid_losses @ counts.T / n).min(axis=0)
        out_losses[model], fold_w = held_out_losses(z, Y, fold_of)
        boot_out[model] = counts @ out_losses[model] / n
        result[model] = {"w": w, "in_sample": in_sample, "in_sample_ci95": interval(boot_in[model]),
                         "held_out": float(out_losses[model].mean()), "held_out_ci95": interval(boot_out[model]),
                         "held_out_fold_w": fold_w}
    for name, boot, point in (("in_sample", boot_in, result["regret"]["in_sample"] - result["partial_return"]["in_sample"]),
                              ("held_out", boot_out, result["regret"]["held_out"] - result["partial_return"]["held_out"])):
        diff = boot["regret"] - boot["partial_return"]
        result[f"{name}_difference"] = {
            "regret_minus_partial_return": float(point), "ci95": interval(diff),
            # two-sided bootstrap p-value of "no difference"
            "p_value": float(min(1.0, 2 * min(np.mean(diff >= 0), np.mean(diff <= 0)) + 1.0 / (len(diff) + 1))),
            "regret_better": bool(np.percentile(diff, 97.5) < 0),
            "partial_return_better": bool(np.percentile(diff, 2.5) > 0)}
    result["held_out_agrees"] = (result["held_out_difference"]["regret_better"]
                                 == result["in_sample_difference"]["regret_better"]
                                 and result["held_out_difference"]["partial_return_better"]
                                 == result["in_sample_difference"]["partial_return_better"])
    return result


def run(data: Path, conditions: list[str], folds: int, bootstrap: int, seed: int) -> dict:
    results = {"conditions": {}, "uniform": UNIFORM,
               "grid": {"w": GRID.tolist(), "rule": "0 and +-0.01 * 1.236^i, i = 1..25"}}
    for index, condition in enumerate(conditions):
        X, Y = load_condition(data, condition)
        results["conditions"][condition] = analyze_condition(X, Y, folds, bootstrap, seed + index)
    controls = [c for c in conditions if c in CONTROLS]
    results["finding"] = {
        "claim": "regret is more likely than partial return in every control condition (paired bootstrap CI below 0)",
        "controls": controls,
        "holds_in_sample": bool(controls) and all(
            results["conditions"][c]["in_sample_difference"]["regret_better"] for c in controls),
        "holds_held_out": bool(controls) and all(
            results["conditions"][c]["held_out_difference"]["regret_better"] for c in controls)}
    return results


# --- output ----------------------------------------------------------------------------------------
def render_markdown(results: dict) -> str:
    """The per-condition table (also pasted into docs/results.md from docs/results/human_likelihood.json)."""
    lines = ["| condition | labels | in-sample: partial return | in-sample: regret | regret - partial return [95% CI] "
             "| held-out: partial return | held-out: regret | regret - partial return [95% CI] | uniform |",
             "|---|---:|---:|---:|---|---:|---:|---|---:|"]
    for name, c in results["conditions"].items():
        row = [name, str(c["labels"])]
        for kind in ("in_sample", "held_out"):
            d = c[f"{kind}_difference"]
            row += [f"{c['partial_return'][kind]:.4f}", f"{c['regret'][kind]:.4f}",
                    f"{d['regret_minus_partial_return']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"]
        row.append(f"{results['uniform']:.4f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def verdict(results: dict) -> str:
    f = results["finding"]
    word = {True: "holds", False: "does not hold"}
    return (f"Regret more likely than partial return in every control condition ({', '.join(f['controls'])}): "
            f"in-sample {word[f['holds_in_sample']]}; held-out {word[f['holds_held_out']]}.")


def write_report(results: dict, path: Path, command: str) -> None:
    meta = results["meta"]
    lines = ["# Regret vs partial return on real human preferences (delivery task)", "",
             f"Command: `{command}`", "",
             f"Mean cross-entropy per label (lower is better; 0.5 labels count half each way). In-sample: the "
             f"minimum over the authors' grid of w. Held-out: {meta['folds']}-fold cross-validation, w chosen on "
             f"the training folds only. CIs: {meta['bootstrap']} paired bootstrap resamples of the labels "
             f"(in-sample: w re-picked on each resample). Seed {meta['seed']}.", "",
             render_markdown(results), verdict(results), ""]
    disagree = [c for c, r in results["conditions"].items() if not r["held_out_agrees"]]
    lines.append("Held-out and in-sample comparisons agree in every condition." if not disagree else
                 f"Held-out and in-sample comparisons disagree in: {', '.join(disagree)}.")
    path.write_text("\n".join(lines) + "\n")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["conditions"])
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(names) + 4), 4.2), sharey=True)
    x = np.arange(len(names))
    for ax, kind, title in zip(axes, ("in_sample", "held_out"), ("in-sample minimum on the grid", "held-out (cross-validated w)")):
        for offset, model, colour in ((-0.2, "partial_return", "#4c72b0"), (0.2, "regret", "#c44e52")):
            means = np.array([results["conditions"][c][model][kind] for c in names])
            cis = np.array([results["conditions"][c][model][f"{kind}_ci95"] for c in names])
            ax.bar(x + offset, means, 0.4, color=colour, label=model.replace("_", " "),
                   yerr=[means - cis[:, 0], cis[:, 1] - means], capsize=2)
        ax.axhline(results["uniform"], color="grey", linestyle="--", label="uniform (log 2)")
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0.3, 0.75)
    axes[0].set_ylabel("mean cross-entropy per label (lower is better)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Delivery task, real human labels: partial return vs regret (95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agents experiment human-likelihood",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Files per condition: <condition>_X.npy (n x 3) and <condition>_Y.npy (n).")
    parser.add_argument("--data", type=Path, required=True, help="folder of <condition>_X.npy / _Y.npy files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--conditions", default=None,
                        help="comma-separated conditions (default: every condition in --data, controls first)")
    parser.add_argument("--folds", type=_positive, default=10, help="cross-validation folds (>= 2)")
    parser.add_argument("--bootstrap", type=_positive, default=2000, help="paired bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seeds the folds and the resamples")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be >= 2")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    conditions = ([c.strip() for c in args.conditions.split(",") if c.strip()] if args.conditions
                  else find_conditions(args.data))
    start = time.perf_counter()
    results = run(args.data, conditions, args.folds, args.bootstrap, args.seed)
    command = "python -m agents experiment human-likelihood " + " ".join(argv)
    results["meta"] = {"command": command, "data": str(args.data), "folds": args.folds, "bootstrap": args.bootstrap,
                       "seed": args.seed, "wall_seconds": time.perf_counter() - start}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, args.out / "report.md", command)
    plot(results, args.out / "human_likelihood.png")
    print((args.out / "report.md").read_text())
    print(f"wrote {args.out / 'results.json'}, {args.out / 'report.md'}, {args.out / 'human_likelihood.png'}")
    return 0
