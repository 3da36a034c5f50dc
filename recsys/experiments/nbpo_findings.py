"""NBPO's findings as committed JSON, and the docs' tables made from it.

    python -m recsys.experiments.nbpo_findings distill hidden_likes --metrics artifacts/compare/hidden/metrics.json
    python -m recsys.experiments.nbpo_findings render          # rewrites the marked tables of docs/results.md

`distill` reads a `python -m recsys compare` metrics.json and writes docs/results/nbpo_<name>.json:
the exact command, data sizes (rebuilt from the compare config), seeds, per-seed values, paired tests
and, for each claim, whether it holds. A claim holds when the reference model is ahead (mean
difference > 0 with p < 0.05 in the paired test over users) at every sweep point the claim covers;
a point that is tied or behind makes it not hold, and the JSON says which.
`render` replaces the text between `<!-- nbpo:<name> -->` and `<!-- /nbpo:<name> -->` in
docs/results.md with the tables of docs/results/nbpo_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recsys.evaluation.doc_blocks import replace_block

RESULTS_DIR = Path("docs/results")
DOCS = Path("docs/results.md")
ALPHA = 0.05

# What each finding measures; the claims name the metric, the baselines and the sweep points they cover.
FINDINGS: dict[str, dict[str, Any]] = {
    "hidden_likes": {
        "title": "NBPO vs BPR vs BPO with liked items hidden among the unobserved ones (no false positives)",
        "paper_claim": "Yu & Qin (SIGIR 2020): implicit feedback misses liked items (false negatives); modelling "
                       "rho_ui = P(observed 0 | truly liked) makes NBPO rank the truly liked items better than "
                       "BPR and BPO.",
        "command": "python -m recsys compare -c configs/recsys/compare_hidden.yaml --out artifacts/compare/hidden",
        "metrics": ["hidden/ndcg@20", "test/ndcg@20", "hidden/recall@20"],
        "extension": "nbpo_authors is NBPO with the authors' settings (configs/recsys/nbpo_authors.yaml); the paired "
                     "tests are always nbpo minus the other model, so nbpo_authors ahead of ours reads 'behind'.",
        "claims": [
            {"metric": "hidden/ndcg@20", "baselines": ["bpr", "bpo"], "points": "rate > 0",
             "says": "NBPO's NDCG@20 against the test rows plus the hidden likes is above BPR's and BPO's at every "
                     "missing-positive rate > 0"},
            {"metric": "test/ndcg@20", "baselines": ["bpr", "bpo"], "points": "rate > 0",
             "says": "NBPO's observed test NDCG@20 is above BPR's and BPO's at every missing-positive rate > 0"},
            {"diagnostic": "hidden_flip_auc", "model": "nbpo", "points": "rate > 0",
             "says": "the learned rho is higher on hidden likes than on pairs neither observed nor liked "
                     "(AUC > 0.5 for every seed at every missing-positive rate > 0)"},
            {"metric": "hidden/ndcg@20", "baselines": ["nbpo_authors"], "points": "rate > 0", "expect": "behind",
             "says": "NBPO with the authors' settings (4 negatives, flip rank = embedding size, full-matrix L2, "
                     "lr x 0.99 per epoch) is above ours on the hidden view at every missing-positive rate > 0"},
        ],
    },
    "authors_vs_bpr": {
        "title": "NBPO with the authors' settings vs BPR, liked items hidden (no false positives)",
        "paper_claim": "Yu & Qin: NBPO ranks the truly liked items better than BPR when liked items hide among the "
                       "unobserved ones; here NBPO runs with the settings of the authors' code.",
        "command": "python -m recsys compare -c configs/recsys/compare_hidden_authors.yaml "
                   "--out artifacts/compare/hidden_authors",
        "metrics": ["hidden/ndcg@20", "test/ndcg@20", "hidden/recall@20"],
        "extension": "BPR keeps its own settings (1 negative, per-triple L2, constant lr), so a gap mixes NBPO's "
                     "flip model with the authors' sampler and schedule.",
        "claims": [
            {"metric": "hidden/ndcg@20", "baselines": ["bpr"], "points": "rate > 0",
             "says": "NBPO with the authors' settings is above BPR on the hidden view at every missing-positive "
                     "rate > 0"},
            {"metric": "test/ndcg@20", "baselines": ["bpr"], "points": "rate > 0",
             "says": "NBPO with the authors' settings is above BPR on the observed test rows at every "
                     "missing-positive rate > 0"},
        ],
    },
    "ml100k_hidden": {
        "title": "NBPO vs BPR on MovieLens-100K with 20% and 40% of each user's training positives withheld",
        "paper_claim": "Yu & Qin: NBPO finds the liked items that are missing from the observed positives.",
        "command": "python -m recsys compare -c configs/recsys/compare_hidden_ml100k.yaml "
                   "--out artifacts/compare/hidden_ml100k",
        "metrics": ["withheld/ndcg@10", "test/ndcg@10", "withheld/recall@10"],
        "claims": [
            {"metric": "withheld/ndcg@10", "baselines": ["bpr"], "points": "rate > 0",
             "says": "NBPO ranks the withheld positives higher than BPR (NDCG@10 on the withheld view)"},
            {"metric": "test/ndcg@10", "baselines": ["bpr"], "points": "all",
             "says": "NBPO's test NDCG@10 is above BPR's at every withheld share"},
            {"diagnostic": "withheld_flip_auc", "model": "nbpo", "points": "rate > 0",
             "says": "the learned rho is higher on withheld positives than on pairs with no interaction "
                     "(AUC > 0.5, every seed)"},
        ],
    },
}


# -- distill ----------------------------------------------------------------------------------
def _verdict(test: dict[str, float]) -> str:
    if test["p_value"] < ALPHA:
        return "ahead" if test["mean_difference"] > 0 else "behind"
    return "tied"


def _summary(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if not math.isnan(v)]
    return {"mean": float(np.mean(finite)) if finite else None,
            "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None, "per_seed": values}


def _data_sizes(config: dict[str, Any], parameter: str | None, value: Any) -> dict[str, Any]:
    """The data of one sweep point, rebuilt from the compare config (cheap: the same seeded split)."""
    from recsys.data.datamodule import InteractionDataModule

    data = dict(config["data"])
    if parameter is not None:
        data[parameter] = value
    datamodule = InteractionDataModule(**data)
    sizes = {"users": datamodule.n_users, "items": datamodule.n_items, "split": datamodule.split.describe()}
    truth, _ = datamodule.evaluation_inputs("test")
    sizes["test_views_rows"] = {name: len(view) for name, view in truth.items()}
    if datamodule.hidden_likes is not None:
        sizes["hidden_likes"] = datamodule.hidden_likes.describe()
    return sizes


def _covered(label: str, rule: str) -> bool:
    if rule == "all":
        return True
    value = float(label.split("=", 1)[1]) if "=" in label else 0.0
    return value > 0  # "rate > 0"


def distill(name: str, metrics_path: Path, command: str | None = None) -> dict[str, Any]:
    spec = FINDINGS[name]
    payload = json.loads(Path(metrics_path).read_text())
    config = payload["config"]
    sweep = payload.get("sweep")
    points = payload["points"] if sweep else {"all": payload}
    parameter = sweep["parameter"] if sweep else None
    out_points: dict[str, Any] = {}
    for (label, block), value in zip(points.items(), sweep["values"] if sweep else [None]):
        models = [m for m in config["models"]]
        keys = spec["metrics"]
        tests = block["paired_tests"]["tests"]
        out_points[label] = {
            "value": value,
            "data": _data_sizes(config, parameter, value),
            "metrics": {m: {k: _summary(block["per_seed"][m][k]) for k in keys if k in block["per_seed"][m]}
                        for m in models},
            "paired_tests": {other: {k: {**tests[other][k], "verdict": _verdict(tests[other][k]["over_users"])}
                                     for k in keys if k in tests[other]} for other in tests},
            "diagnostics": {m: d for m, d in block["diagnostics"].items() if any("flip" in k or "rho" in k for k in d)},
        }
    claims = [_judge(claim, out_points) for claim in spec["claims"]]
    return {
        "finding": spec["title"], "paper_claim": spec["paper_claim"],
        **({"note": spec["extension"]} if "extension" in spec else {}), "command": command or spec["command"],
        "reference_model": next(iter(config["models"])), "seeds": config["seeds"],
        "sweep": sweep, "monitor": config["monitor"], "ks": config["ks"],
        "models": config["models"], "data_options": config["data"], "trainer": config["trainer"],
        "protocol": "per-user random split (data.seed); best epoch by the observed validation metric (monitor); "
                    "full ranking over all items with each view's exclusions masked; paired t-test over users on "
                    "per-user values averaged over seeds (95% bootstrap CI) and over seed means. A claim holds "
                    f"when the reference is ahead (difference > 0, p over users < {ALPHA}) at every point it covers.",
        "machine": "shared 2-core CPU machine, loaded by other jobs (timings not comparable)",
        "points": out_points, "claims": claims, "holds": all(c["holds"] for c in claims),
    }


def _judge(claim: dict[str, Any], points: dict[str, Any]) -> dict[str, Any]:
    covered = [label for label in points if _covered(label, claim["points"])]
    detail: dict[str, Any] = {}
    if "diagnostic" in claim:
        for label in covered:
            values = points[label]["diagnostics"].get(claim["model"], {}).get(claim["diagnostic"], [])
            detail[label] = {"per_seed": values, "above_half": bool(values) and all(v > 0.5 for v in values)}
        holds = bool(covered) and all(d["above_half"] for d in detail.values())
    else:
        for label in covered:
            detail[label] = {b: points[label]["paired_tests"].get(b, {}).get(claim["metric"], {}).get("verdict")
                             for b in claim["baselines"]}
        expect = claim.get("expect", "ahead")  # "behind": the claim is that the other model beats the reference
        holds = bool(covered) and all(v == expect for d in detail.values() for v in d.values())
    return {**claim, "covered_points": covered, "detail": detail, "holds": holds}


# -- render -----------------------------------------------------------------------------------
def _cell(summary: dict[str, Any] | None) -> str:
    if not summary or summary["mean"] is None:
        return "–"
    return f"{summary['mean']:.4f}" + (f" ± {summary['sd']:.4f}" if summary["sd"] is not None else "")


def tables(finding: dict[str, Any]) -> str:
    """Markdown tables of one distilled finding: metrics, paired tests, rho diagnostics, claims."""
    parameter = (finding.get("sweep") or {}).get("parameter", "point")
    models = list(finding["models"])
    reference = finding["reference_model"]
    lines: list[str] = []
    keys = list(dict.fromkeys(k for point in finding["points"].values() for k in point["metrics"][reference]))
    for key in keys:
        lines += [f"**{key}** (mean ± sd over seeds {finding['seeds']}):", "",
                  f"| {parameter} | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for point in finding["points"].values():
            lines.append(f"| {point['value']} | " + " | ".join(_cell(point["metrics"][m].get(key)) for m in models)
                         + " |")
        lines.append("")
    lines += [f"**Paired tests, {reference} minus each model** (over users: per-user values averaged over seeds, "
              "95% bootstrap CI; over seeds: run means):", "",
              f"| {parameter} | model | metric | difference [95% CI] | p (users) | p (seeds) | verdict |",
              "|---|---|---|---|---|---|---|"]
    for point in finding["points"].values():
        for other, per_key in point["paired_tests"].items():
            for key, test in per_key.items():
                users = test["over_users"]
                seeds_p = test.get("over_seeds", {}).get("p_value", float("nan"))
                lines.append(f"| {point['value']} | {other} | {key} | {users['mean_difference']:+.4f} "
                             f"[{users['ci_low']:+.4f}, {users['ci_high']:+.4f}] | {users['p_value']:.2g} | "
                             f"{seeds_p:.2g} | {test['verdict']} |")
    rho_rows = []
    for point in finding["points"].values():
        for model, d in point["diagnostics"].items():
            for kind in ("hidden", "hidden_vs_heldout", "withheld"):
                if f"{kind}_flip_auc" in d:
                    auc = ", ".join(f"{v:.3f}" for v in d[f"{kind}_flip_auc"])
                    rho_rows.append(f"| {point['value']} | {model} | {kind} | {auc} | "
                                    f"{np.nanmean(d[f'rho_{kind}']):.4f} | {np.nanmean(d[f'rho_{kind}_contrast']):.4f} |")
    if rho_rows:
        lines += ["", "**Learned rho = P(observed 0 | liked)**: AUC for telling the targets from their contrast, "
                      "per seed, and mean rho on each group. hidden: hidden likes vs pairs neither observed nor "
                      "liked; hidden_vs_heldout: hidden likes vs the liked pairs observed in valid and test; "
                      "withheld: withheld training pairs vs pairs with no interaction.", "",
                  f"| {parameter} | model | targets | AUC per seed | mean rho, targets | mean rho, contrast |",
                  "|---|---|---|---|---|---|", *rho_rows]
    lines += ["", f"**Claims** (a claim holds when it holds at every point it covers; '{reference} vs X: ahead' means "
                  f"{reference} minus X > 0 with p over users < {ALPHA}):", "",
              "| claim | holds | per point |", "|---|---|---|"]
    for claim in finding["claims"]:
        detail = "; ".join(f"{label}: " + (", ".join(f"{reference} vs {b}: {v}" for b, v in d.items())
                                           if "above_half" not in d
                                           else ("AUC > 0.5" if d["above_half"] else "not all AUC > 0.5"))
                           for label, d in claim["detail"].items())
        lines.append(f"| {claim['says']} | {'yes' if claim['holds'] else 'no'} | {detail} |")
    return "\n".join(lines) + "\n"


def render(docs: Path = DOCS, results: Path = RESULTS_DIR) -> list[str]:
    """Rewrite every `<!-- nbpo:NAME -->` ... `<!-- /nbpo:NAME -->` block of `docs` from results/nbpo_NAME.json."""
    text = docs.read_text()
    done = []
    for name in FINDINGS:
        path = results / f"nbpo_{name}.json"
        start, end = f"<!-- nbpo:{name} -->\n", f"<!-- /nbpo:{name} -->"
        if path.is_file() and replace_block(text, start, end, "") is not None:
            text = replace_block(text, start, end, tables(json.loads(path.read_text())))
            done.append(name)
    docs.write_text(text)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.experiments.nbpo_findings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("distill", help="metrics.json of a compare run -> docs/results/nbpo_<name>.json")
    make.add_argument("name", choices=sorted(FINDINGS))
    make.add_argument("--metrics", type=Path, required=True, help="metrics.json written by python -m recsys compare")
    make.add_argument("--out", type=Path, default=None, help="default: docs/results/nbpo_<name>.json")
    show = sub.add_parser("render", help="rewrite the marked NBPO tables of docs/results.md from the JSON")
    show.add_argument("--docs", type=Path, default=DOCS)
    show.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.command == "distill":
        if not args.metrics.is_file():
            print(f"error: --metrics {args.metrics} does not exist", file=sys.stderr)
            return 2
        finding = distill(args.name, args.metrics)
        out = args.out or RESULTS_DIR / f"nbpo_{args.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(finding, indent=2, default=float) + "\n")
        print(f"wrote {out}: holds = {finding['holds']}")
        return 0
    done = render(args.docs, args.results)
    print(f"rewrote {', '.join(done) or 'no'} table block(s) in {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
