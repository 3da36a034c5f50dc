"""Pluralistic preferences for recommendation: does a mixture of taste prototypes place new users better?

    python -m recsys compare -c configs/recsys/compare_pluralistic.yaml [--out DIR] [--override YAML]

On a preference world with K trait-independent taste types (`WorldConfig.taste_types`), users are
split into seen users (they train the models), validation users and test users (both unseen). A
user's answers to "which of these two items?" follow Bradley-Terry on their true utilities
(standardised per user, `pairs.temperature`). Three models of `recsys.models.pluralistic` train on
the seen users' feedback with the same settings: their answers (`pairs.feedback: answers`), or, with
`pairs.feedback: implicit`, their interaction log as a recommender sees it (every observed item, false
positives included, over `pairs.negatives` items they never touched, BPR-style):

- mixture: K prototypes, each user a softmax mixture of them;
- shared: one prototype, the single preference function every user shares;
- per_user: a free d-vector per user (matrix factorisation).

Unseen users answer M comparisons (M in `comparisons`) and are placed with the model frozen
(mixture: their weights; per_user: their vector; shared: nothing to place). Reported: held-out pair
accuracy (random item pairs ordered by true utility) for seen users and for test users at each M,
the adjusted Rand index of each user's dominant prototype against their true dominant type (beside
the ARI of an oracle that knows the type centres and picks the type most likely to have given the
same answers: what those answers allow), and
the negative control: the same on a world whose users all share one type (`control_world`), where
the mixture must not be worse than the shared model. The placement prior is chosen per model and
M on the validation users only; test users are scored once. Every number is a mean over `seeds`
(a new world, split, answers and initialisation each) with its sd; mixture vs shared and mixture vs
per_user are paired t-tests over seeds and over test users (pooled across seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from recsys.data.world import WorldConfig, generate_world
from recsys.errors import UserInputError
from recsys.evaluation.clustering import adjusted_rand_index
from recsys.evaluation.significance import paired_comparison
from recsys.models.pluralistic import PluralisticRecommender

log = logging.getLogger(__name__)

MODELS = ("mixture", "shared", "per_user")
FEEDBACK = ("answers", "implicit")
DEFAULTS: dict[str, Any] = {
    "out": "artifacts/compare/pluralistic",
    "seeds": [0, 1, 2],
    "world": {"preset": "toy", "n_users": 1000, "n_items": 300, "taste_types": 4, "type_influence": 0.8,
              "type_concentration": 0.2},
    "control_world": {"taste_types": 1},
    "users": {"seen": 600, "validation": 200, "test": 200},
    "pairs": {"feedback": "answers", "train_per_user": 40, "negatives": 1, "eval_per_user": 200,
              "temperature": 0.5},
    "comparisons": [1, 2, 5, 10, 20],
    "model": {"prototypes": 4, "embedding_dim": 16, "lr": 0.03, "l2": 1e-4, "logit_l2": 0.0, "epochs": 40,
              "batch_size": 512},
    "models": {"mixture": {}, "shared": {}, "per_user": {}},  # per-model changes to `model`
    "placement_priors": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
    "finding": {"min_unseen_gain": 0.10, "at_comparisons": 10, "min_ari": 0.8},
    "threads": 1,
}


# -- config ------------------------------------------------------------------------------------
def _merge(base: dict, extra: dict, where: str) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if key not in base:
            raise UserInputError(f"{where}: unknown key {key!r}; known: {', '.join(base)}")
        out[key] = _merge(base[key], value, f"{where}.{key}") if isinstance(base[key], dict) and isinstance(
            value, dict) and key not in ("world", "control_world", "mixture", "shared", "per_user") else value
    return out


def load_config(path: Path, override: str | None = None) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"{path}: config not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        extra = yaml.safe_load(override) if override else {}
    except yaml.YAMLError as error:
        raise UserInputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(extra or {}, dict):
        raise UserInputError(f"{path}: the config and --override must be YAML mappings")
    raw.pop("experiment", None)
    config = _merge(DEFAULTS, raw, str(path))
    config = _merge(config, extra or {}, "--override")
    users = config["users"]
    if min(users.values()) < 2:
        raise UserInputError(f"{path}: users.seen, users.validation and users.test must each be >= 2")
    if sum(users.values()) > config["world"].get("n_users", 0):
        raise UserInputError(f"{path}: users.* add up to {sum(users.values())}, more than world.n_users")
    if not config["seeds"] or not config["comparisons"] or min(config["comparisons"]) < 1:
        raise UserInputError(f"{path}: seeds and comparisons must be non-empty, comparisons >= 1")
    for kind in MODELS:
        unknown = sorted(set(config["models"].get(kind) or {}) - set(DEFAULTS["model"]))
        if unknown:
            raise UserInputError(f"{path}: models.{kind}: unknown key(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(DEFAULTS['model'])}")
    if config["pairs"]["feedback"] not in FEEDBACK:
        raise UserInputError(f"{path}: pairs.feedback must be one of {', '.join(FEEDBACK)}, got "
                             f"{config['pairs']['feedback']!r}")
    if config["pairs"]["negatives"] < 1:
        raise UserInputError(f"{path}: pairs.negatives must be >= 1, got {config['pairs']['negatives']}")
    if config["finding"]["at_comparisons"] not in config["comparisons"]:
        raise UserInputError(f"{path}: finding.at_comparisons must be one of comparisons")
    return config


def world_config(spec: dict[str, Any], seed: int) -> WorldConfig:
    spec = dict(spec)
    preset = spec.pop("preset", "toy")
    return WorldConfig.preset(preset, **{**spec, "seed": seed})


# -- data ----------------------------------------------------------------------------------------
def answers(world, users: np.ndarray, per_user: int, temperature: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, preferred, over), `per_user` random pairs each, chosen by Bradley-Terry on standardised utility."""
    n_items = world.n_items
    first = rng.integers(0, n_items, (len(users), per_user))
    second = (first + rng.integers(1, n_items, (len(users), per_user))) % n_items  # never the same item
    utility = world.true_utility(users)
    utility = (utility - utility.mean(1, keepdims=True)) / utility.std(1, keepdims=True)
    margin = np.take_along_axis(utility, first, 1) - np.take_along_axis(utility, second, 1)
    picks_first = rng.random(margin.shape) < 1 / (1 + np.exp(-margin / temperature))
    preferred, over = np.where(picks_first, first, second), np.where(picks_first, second, first)
    return np.repeat(users, per_user).reshape(len(users), per_user), preferred, over


def implicit_pairs(world, users: np.ndarray, negatives: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, observed, sampled): each distinct item `users` interacted with, over `negatives` items drawn
    uniformly from those the user never interacted with. The log as a recommender has it: false positives
    stay, and what a user never saw counts as a negative."""
    n_items = world.n_items
    keys = np.unique(world.observed.user.astype(np.int64) * n_items + world.observed.item)
    keys = keys[np.isin(keys // n_items, users)]
    user, item = keys // n_items, keys % n_items
    per_user = np.bincount(user, minlength=world.n_users)
    if (per_user[users] >= n_items).any():
        raise UserInputError("pairs.feedback implicit: a user interacted with every item, nothing to sample")
    sampled = rng.integers(0, n_items, (len(user), negatives))
    clash = np.isin(user[:, None] * n_items + sampled, keys)
    while clash.any():  # redraw the few that hit an observed item; each user has unobserved items left
        sampled[clash] = rng.integers(0, n_items, int(clash.sum()))
        clash = np.isin(user[:, None] * n_items + sampled, keys)
    return user, item, sampled


def type_oracle(world, preferred: np.ndarray, over: np.ndarray, temperature: float) -> np.ndarray:
    """Per user, the pure taste type most likely to have given their answers (the best type these answers allow).

    It knows what no model is told, the type centres and the item vectors, and scores each type by the
    Bradley-Terry log-likelihood of the answers under that type's standardised utility. Its ARI against
    the true dominant type is a ceiling of sorts for type recovery from the same answers.
    """
    utility = world.type_utilities()
    utility = (utility - utility.mean(1, keepdims=True)) / utility.std(1, keepdims=True)
    margins = (utility[:, preferred] - utility[:, over]) / temperature  # (K, users, answers)
    return (-np.logaddexp(0.0, -margins)).sum(axis=2).argmax(axis=0)


def eval_pairs(world, users: np.ndarray, per_user: int, rng: np.random.Generator):
    """Random item pairs per user with the truly preferred one first (ties dropped by the mask)."""
    n_items = world.n_items
    first = rng.integers(0, n_items, (len(users), per_user))
    second = (first + rng.integers(1, n_items, (len(users), per_user))) % n_items
    utility = world.true_utility(users)
    u1, u2 = np.take_along_axis(utility, first, 1), np.take_along_axis(utility, second, 1)
    return np.where(u1 > u2, first, second), np.where(u1 > u2, second, first), u1 != u2


def pair_accuracy(scores: np.ndarray, better: np.ndarray, worse: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per user: the share of valid pairs the scores order as the truth does (ties count half)."""
    a, b = np.take_along_axis(scores, better, 1), np.take_along_axis(scores, worse, 1)
    right = (a > b) + 0.5 * (a == b)
    return (right * valid).sum(1) / np.maximum(valid.sum(1), 1)


# -- one seed ------------------------------------------------------------------------------------
def build_model(kind: str, n_users: int, n_items: int, config: dict[str, Any]) -> PluralisticRecommender:
    spec = {**config["model"], **(config["models"].get(kind) or {})}
    return PluralisticRecommender(
        n_users, n_items, prototypes=spec["prototypes"] if kind == "mixture" else 1,
        embedding_dim=spec["embedding_dim"], users="free" if kind == "per_user" else "mixture", lr=spec["lr"],
        l2=spec["l2"], logit_l2=spec["logit_l2"])


def run_world(config: dict[str, Any], world_spec: dict[str, Any], seed: int) -> dict[str, Any]:
    world = generate_world(world_config(world_spec, seed))
    rng = np.random.default_rng([seed, 19])
    order = rng.permutation(world.n_users)
    sizes = config["users"]
    seen = np.sort(order[:sizes["seen"]])
    validation = np.sort(order[sizes["seen"]:sizes["seen"] + sizes["validation"]])
    test = np.sort(order[sizes["seen"] + sizes["validation"]:sizes["seen"] + sizes["validation"] + sizes["test"]])
    pairs, m_max = config["pairs"], max(config["comparisons"])
    train_users, preferred, over = answers(world, seen, pairs["train_per_user"], pairs["temperature"], rng)
    implicit = pairs["feedback"] == "implicit"
    if implicit:  # its own stream, so unseen users' answers and every evaluation pair stay those of `answers`
        train_users, preferred, over = implicit_pairs(world, seen, pairs["negatives"],
                                                      np.random.default_rng([seed, 19, 1]))
    row = np.empty(world.n_users, np.int64)
    row[seen] = np.arange(len(seen))  # models index seen users 0..n_seen-1
    seen_eval = eval_pairs(world, seen, pairs["eval_per_user"], rng)
    unseen = {}
    for name, users in (("validation", validation), ("test", test)):
        _, asked_better, asked_worse = answers(world, users, m_max, pairs["temperature"], rng)
        unseen[name] = (asked_better, asked_worse, eval_pairs(world, users, pairs["eval_per_user"], rng))

    # Type recovery means something only with two or more types.
    truth = world.population.dominant_type if world.config.taste_types >= 2 else None
    result: dict[str, Any] = {"models": {}}
    per_user_test: dict[str, dict[int, np.ndarray]] = {}
    for index, kind in enumerate(MODELS):
        torch.manual_seed(seed * 100 + index)
        model = build_model(kind, len(seen), world.n_items, config)
        spec = {**config["model"], **(config["models"].get(kind) or {})}
        started = time.perf_counter()
        losses = model.fit_pairs(row[train_users.ravel()], preferred.ravel(), over.reshape(len(preferred.ravel()), -1),
                                 spec["epochs"], spec["batch_size"], seed=seed)
        fit_seconds = time.perf_counter() - started
        with torch.no_grad():
            seen_scores = model.score_users(torch.arange(len(seen))).double().numpy()
        entry: dict[str, Any] = {"final_loss": losses[-1], "fit_seconds": fit_seconds,
                                 "seen_accuracy": float(pair_accuracy(seen_scores, *seen_eval).mean())}
        if kind == "mixture" and truth is not None:
            dominant = model.mixture_weights().detach().numpy().argmax(1)
            entry["seen_ari"] = adjusted_rand_index(dominant, truth[seen])
            if not implicit:  # the oracle knows how answers arise, not how an interaction log does
                oracle = type_oracle(world, preferred, over, pairs["temperature"])
                entry["seen_oracle_ari"] = adjusted_rand_index(oracle, truth[seen])
        entry["unseen"], per_user_test[kind] = {}, {}
        for m in config["comparisons"]:
            chosen, accuracy = _place_and_score(model, kind, unseen, m, config["placement_priors"])
            entry["unseen"][str(m)] = {"accuracy": float(accuracy["test"].mean()), "prior": chosen,
                                       "validation_accuracy": float(accuracy["validation"].mean())}
            per_user_test[kind][m] = accuracy["test"]
            if kind == "mixture" and truth is not None and m == m_max:
                entry["unseen_ari_at_max"] = adjusted_rand_index(accuracy["dominant"], truth[test])
                asked_better, asked_worse, _ = unseen["test"]
                oracle = type_oracle(world, asked_better[:, :m], asked_worse[:, :m], pairs["temperature"])
                entry["unseen_oracle_ari_at_max"] = adjusted_rand_index(oracle, truth[test])
        result["models"][kind] = entry
    result["per_user_test"] = {kind: {str(m): values.tolist() for m, values in by_m.items()}
                               for kind, by_m in per_user_test.items()}
    return result


def _place_and_score(model: PluralisticRecommender, kind: str, unseen: dict, m: int, priors: list[float]):
    """Place validation users under each prior, keep the best on validation, score test users with it."""
    def score(name: str, prior: float):
        asked_better, asked_worse, (better, worse, valid) = unseen[name]
        if kind == "shared":  # one prototype: every user is the shared user
            logits = model.prior_logits().double().expand(len(better), -1)
        else:
            logits = model.place_users(asked_better[:, :m], asked_worse[:, :m], prior=prior)
        scores = model.score_placed(logits).numpy()
        dominant = logits.argmax(1).numpy() if kind == "mixture" else None
        return pair_accuracy(scores, better, worse, valid), dominant

    candidates = priors if kind != "shared" else priors[:1]
    validated = {prior: score("validation", prior)[0].mean() for prior in candidates}
    chosen = max(candidates, key=lambda prior: (validated[prior], -candidates.index(prior)))
    test_accuracy, dominant = score("test", chosen)
    return chosen, {"validation": np.array([validated[chosen]]), "test": test_accuracy, "dominant": dominant}


# -- over seeds ----------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, float | None]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
            "per_seed": values.tolist()}


def _paired(a: list, b: list) -> dict[str, float] | None:
    if len(a) < 2:
        return None
    test = paired_comparison(a, b, n_resamples=2000)
    return {"difference": test.mean_difference, "p_value": test.p_value, "ci_low": test.ci_low,
            "ci_high": test.ci_high, "n": test.n}


def summarize(runs: list[dict[str, Any]], comparisons: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"models": {}, "tests": {}}
    for kind in MODELS:
        entries = [run["models"][kind] for run in runs]
        row = {"seen_accuracy": _stats([e["seen_accuracy"] for e in entries]),
               "unseen_accuracy": {str(m): _stats([e["unseen"][str(m)]["accuracy"] for e in entries])
                                   for m in comparisons},
               "validation_accuracy": {str(m): _stats([e["unseen"][str(m)]["validation_accuracy"] for e in entries])
                                       for m in comparisons},
               "placement_prior": {str(m): [e["unseen"][str(m)]["prior"] for e in entries] for m in comparisons}}
        for key in ("seen_ari", "seen_oracle_ari", "unseen_ari_at_max", "unseen_oracle_ari_at_max"):
            if key in entries[0]:
                row[key] = _stats([e[key] for e in entries])
        out["models"][kind] = row
    for other in ("shared", "per_user"):
        tests = {"seen": {"over_seeds": _paired([r["models"]["mixture"]["seen_accuracy"] for r in runs],
                                                [r["models"][other]["seen_accuracy"] for r in runs])}}
        for m in comparisons:
            key = str(m)
            pooled_a = np.concatenate([r["per_user_test"]["mixture"][key] for r in runs])
            pooled_b = np.concatenate([r["per_user_test"][other][key] for r in runs])
            tests[f"unseen@{m}"] = {
                "over_seeds": _paired([r["models"]["mixture"]["unseen"][key]["accuracy"] for r in runs],
                                      [r["models"][other]["unseen"][key]["accuracy"] for r in runs]),
                "over_test_users": _paired(pooled_a.tolist(), pooled_b.tolist())}
        out["tests"][f"mixture_vs_{other}"] = tests
    return out


def finding(summary: dict[str, Any], control: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    m = str(rule["at_comparisons"])
    gain = summary["tests"]["mixture_vs_shared"][f"unseen@{m}"]
    control_gain = control["tests"]["mixture_vs_shared"][f"unseen@{m}"]
    ari = summary["models"]["mixture"].get("seen_ari", {}).get("mean")
    unseen_gain = (summary["models"]["mixture"]["unseen_accuracy"][m]["mean"]
                   - summary["models"]["shared"]["unseen_accuracy"][m]["mean"])
    control_difference = (control["models"]["mixture"]["unseen_accuracy"][m]["mean"]
                          - control["models"]["shared"]["unseen_accuracy"][m]["mean"])
    return {"unseen_gain": unseen_gain, "unseen_gain_p_users": gain["over_test_users"]["p_value"],
            "unseen_gain_met": unseen_gain >= rule["min_unseen_gain"],
            "seen_ari": ari, "ari_met": ari is not None and ari >= rule["min_ari"],
            "control_difference": control_difference,
            "control_p_users": control_gain["over_test_users"]["p_value"],
            "control_not_worse": control_difference >= 0,
            "holds": bool(unseen_gain >= rule["min_unseen_gain"] and ari is not None and ari >= rule["min_ari"]
                          and control_difference >= 0)}


def run(config: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(int(config["threads"]))
    control_spec = {**config["world"], **(config["control_world"] or {})}
    started = time.perf_counter()
    typed, control = [], []
    for seed in config["seeds"]:
        log.info("seed %d: typed world", seed)
        typed.append(run_world(config, config["world"], seed))
        if config["control_world"] is not None:
            log.info("seed %d: control world", seed)
            control.append(run_world(config, control_spec, seed))
    summary = summarize(typed, config["comparisons"])
    result = {"config": config, "typed": summary, "wall_seconds": None}
    if control:  # tuning runs skip the control (control_world: null)
        result["control"] = summarize(control, config["comparisons"])
        result["finding"] = finding(summary, result["control"], config["finding"])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def report(result: dict[str, Any]) -> str:
    lines = ["| world | model | seen | " + " | ".join(f"unseen M={m}" for m in result["config"]["comparisons"]) + " |",
             "|---|---|---|" + "---|" * len(result["config"]["comparisons"])]
    for world in ("typed", "control"):
        if world not in result:
            continue
        for kind in MODELS:
            row = result[world]["models"][kind]
            cells = [f"{row['seen_accuracy']['mean']:.3f}"] + [
                f"{row['unseen_accuracy'][str(m)]['mean']:.3f}" for m in result["config"]["comparisons"]]
            lines.append(f"| {world} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + json.dumps(result.get("finding"), indent=2) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, type=Path, help="configs/recsys/compare_pluralistic.yaml")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the config's out)")
    parser.add_argument("--override", default=None,
                        help="YAML merged into the config, e.g. '{seeds: [0], model: {epochs: 5}}'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(args.config, args.override)
    out = Path(args.out or config["out"])
    config["out"] = str(out)
    result = run(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(report(result))
    print(report(result))
    print(f"wrote {out / 'metrics.json'}")
    return 0
