"""The offline evaluator: full ranking of every item for every user that has something to find.

`evaluate(scorer, truth, exclude, ks)` ranks all items for each user (in batches), masks the
user's excluded items, and scores the top max(K) against each split of `truth`.
`evaluate_lists(recs, truth, exclude, ks)` scores lists made by any other system with the same
rules. Both return an `EvaluationResult` whose `metrics` are flat "<split>/<metric>@<k>" keys.

Which users count: for each split, the users with at least one relevant item there (a positive
row of the split that is not among their excluded items). Users of the split without one are
skipped and counted in `EvaluationResult.counts`. Relevant items that are also excluded (a leak
between splits) cannot be recommended; they are removed from the relevant set and counted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.interactions import InteractionData
from recsys.errors import UserInputError
from recsys.evaluation import metrics as M
from recsys.evaluation.lists import RowErrors, lists_from_frame
from recsys.evaluation.pairs import UserItemSet
from recsys.evaluation.ranking import Candidates, Scorer, batch_size_for, rank_users, sample_candidates

log = logging.getLogger(__name__)

BEYOND_ACCURACY = ("coverage", "avg_popularity", "gini")
METRIC_NAMES = (*M.ACCURACY_METRICS, *BEYOND_ACCURACY)
TIE_RULE = "equal scores: lower internal item id ranks first"

Exclude = Sequence[InteractionData] | Mapping[str, Sequence[InteractionData]] | InteractionData | None


@dataclass
class EvaluationResult:
    """Metrics of one evaluation.

    metrics:  "<split>/<metric>@<k>" -> mean over the split's users.
    per_user: the same keys (accuracy metrics and avg_popularity) -> one value per user,
              aligned with `users[split]`.
    users:    split -> internal ids of the users that count, ascending.
    counts:   split -> {"users", "skipped_users", "relevant", "relevant_excluded", ...}.
    protocol: how the numbers were made (ranking "full" or "sampled", masking, ties, ks).
    """

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: dict[str, np.ndarray]
    ks: tuple[int, ...]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.users)

    def value(self, split: str, metric: str, k: int) -> float:
        return self.metrics[f"{split}/{metric}@{k}"]

    def to_dict(self, per_user: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {"metrics": self.metrics, "ks": list(self.ks), "counts": self.counts,
                                   "protocol": self.protocol}
        if per_user:
            payload["users"] = {s: u.tolist() for s, u in self.users.items()}
            payload["per_user"] = {key: v.tolist() for key, v in self.per_user.items()}
        return payload

    def to_json(self, per_user: bool = False, indent: int | None = 2) -> str:
        """JSON of the metrics, counts and protocol (and the per-user vectors when asked)."""
        return json.dumps(self.to_dict(per_user), indent=indent)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> EvaluationResult:
        users = {s: np.asarray(u, dtype=np.int64) for s, u in payload.get("users", {}).items()}
        per_user = {key: np.asarray(v, dtype=np.float64) for key, v in payload.get("per_user", {}).items()}
        return cls(metrics={k: float(v) for k, v in payload["metrics"].items()}, per_user=per_user, users=users,
                   ks=tuple(payload["ks"]), counts=dict(payload.get("counts", {})),
                   protocol=dict(payload.get("protocol", {})))

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class _Split:
    """One split of the truth, prepared: whom to evaluate and against what."""

    name: str                 # the key prefix (labelled when ranking is sampled)
    hidden: UserItemSet       # excluded pairs (masked from ranking)
    exclusion: tuple[int, ...]  # identity of the excluded data, to rank once per distinct exclusion
    relevant: UserItemSet
    users: np.ndarray
    counts: dict[str, int]


def _check_ks(ks) -> tuple[int, ...]:
    ks = tuple(sorted({int(k) for k in ([ks] if isinstance(ks, int) else ks)}))
    if not ks or ks[0] < 1:
        raise UserInputError(f"cut-offs K must be positive integers, got {ks}")
    return ks


def _check_same_vocab(datasets: Mapping[str, InteractionData]) -> tuple[int, int]:
    (first_name, first), *rest = datasets.items()
    for name, data in rest:
        if data.vocab is first.vocab:
            continue
        if (data.n_users, data.n_items) != (first.n_users, first.n_items) or data.vocab.digest() != first.vocab.digest():
            raise UserInputError(f"'{name}' and '{first_name}' use different id vocabularies "
                                 f"({data.n_users}x{data.n_items} vs {first.n_users}x{first.n_items} users x items); "
                                 "every split must share one IdVocab")
    return first.n_users, first.n_items


def _exclusions(exclude: Exclude, splits: Sequence[str]) -> dict[str, tuple[InteractionData, ...]]:
    if exclude is None:
        return {s: () for s in splits}
    if isinstance(exclude, InteractionData):
        return {s: (exclude,) for s in splits}
    if isinstance(exclude, Mapping):
        missing = [s for s in splits if s not in exclude]
        if missing:
            raise UserInputError(f"exclude names no data to mask for split(s) {missing}; give a list "
                                 "(the same for every split) or one entry per split (an empty list for none)")
        return {s: tuple([exclude[s]] if isinstance(exclude[s], InteractionData) else exclude[s]) for s in splits}
    return {s: tuple(exclude) for s in splits}


def _default_popularity(exclude: Exclude) -> np.ndarray | None:
    """Training popularity: item counts of the first excluded data (by convention the training set)."""
    if isinstance(exclude, InteractionData):
        return exclude.item_counts()
    if isinstance(exclude, Mapping):
        exclude = next((v for v in exclude.values() if len(v)), ())
        if isinstance(exclude, InteractionData):
            return exclude.item_counts()
    return exclude[0].item_counts() if exclude else None


def _prepare(truth: Mapping[str, InteractionData], exclude: Exclude, label: str = "") -> list[_Split]:
    if not isinstance(truth, Mapping) or not truth:
        raise UserInputError("truth must be a non-empty dict of split name -> InteractionData")
    exclusions = _exclusions(exclude, list(truth))
    everything = dict(truth) | {f"exclude[{s}][{i}]": d for s, ds in exclusions.items() for i, d in enumerate(ds)}
    n_users, n_items = _check_same_vocab(everything)
    prepared, hidden_cache = [], {}
    for split, data in truth.items():
        key = tuple(sorted(map(id, exclusions[split])))
        if key not in hidden_cache:
            hidden_cache[key] = UserItemSet.union_of(exclusions[split], n_users, n_items)
        hidden = hidden_cache[key]
        relevant, leaked = UserItemSet.positives_of(data).difference(hidden)
        has_relevant = relevant.row_counts() > 0
        in_split = np.bincount(data.user, minlength=n_users) > 0
        counts = {"users": int(has_relevant.sum()), "skipped_users": int((in_split & ~has_relevant).sum()),
                  "relevant": len(relevant), "relevant_excluded": leaked}
        if leaked:
            log.warning("split '%s': %d relevant (user, item) pairs are also excluded items; they cannot be "
                        "recommended and are removed from the relevant set", split, leaked)
        if counts["skipped_users"]:
            log.info("split '%s': %d users have no relevant item and are skipped", split, counts["skipped_users"])
        if not counts["users"]:
            raise UserInputError(f"split '{split}' has no user with a relevant item to evaluate")
        prepared.append(_Split(split + label, hidden, key, relevant, np.flatnonzero(has_relevant), counts))
    return prepared


def _popularity(popularity, exclude: Exclude, n_items: int) -> np.ndarray | None:
    if popularity is None:
        return _default_popularity(exclude)
    popularity = np.asarray(popularity, dtype=np.float64)
    if popularity.shape != (n_items,):
        raise UserInputError(f"popularity must have one value per item ({n_items}), got shape {popularity.shape}")
    return popularity


def score_lists(split: str, users: np.ndarray, top: np.ndarray, relevant: UserItemSet, ks: tuple[int, ...],
                popularity: np.ndarray | None = None, beyond_accuracy: bool = True,
                ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of ranked lists `top` (one row per user in `users`, -1 for empty slots)."""
    hits = relevant.contains(users, top)
    n_relevant = relevant.row_counts()[users]
    means, per_user = {}, {}
    for k in ks:
        for name, metric in M.ACCURACY_METRICS.items():
            values = metric(hits, n_relevant, k)
            per_user[f"{split}/{name}@{k}"] = values
        if beyond_accuracy:
            means[f"{split}/coverage@{k}"] = M.item_coverage(top, relevant.n_items, k)
            means[f"{split}/gini@{k}"] = M.gini_exposure(top, relevant.n_items, k)
            if popularity is not None:
                per_user[f"{split}/avg_popularity@{k}"] = M.average_popularity(top, popularity, k)
    means.update({key: float(values.mean()) for key, values in per_user.items()})
    return dict(sorted(means.items())), per_user


def _result(splits: list[_Split], tops: list[np.ndarray], ks, popularity, beyond: bool, protocol) -> EvaluationResult:
    metrics, per_user = {}, {}
    for split, top in zip(splits, tops):
        means, vectors = score_lists(split.name, split.users, top, split.relevant, ks, popularity, beyond)
        metrics.update(means)
        per_user.update(vectors)
    return EvaluationResult(metrics=metrics, per_user=per_user, users={s.name: s.users for s in splits}, ks=ks,
                            counts={s.name: s.counts for s in splits}, protocol=protocol)


def _protocol(ranking: str, ks, exclusions: Mapping[str, int], **extra) -> dict[str, Any]:
    return {"ranking": ranking, "ks": list(ks), "ties": TIE_RULE,
            "masked": "every (user, item) pair of the excluded data, whatever its label",
            "excluded_datasets_per_split": dict(exclusions),
            "users": "users with >= 1 relevant (positive, not excluded) item in the split", **extra}


def evaluate(scorer: Scorer, truth: Mapping[str, InteractionData], exclude: Exclude = None,
             ks: Sequence[int] | int = (10, 20), batch_size: int | None = None, popularity=None,
             sampled_negatives: int | None = None, seed: int = 0, progress: bool = False,
             memory_budget_mb: float = 256.0, rank: Callable[..., list[np.ndarray]] = rank_users) -> EvaluationResult:
    """Full-ranking evaluation of `scorer` on every split of `truth`.

    scorer:  callable(users: int64 array) -> (len(users), n_items) scores, higher is better.
    truth:   split name -> interactions; positives (label > 0, or every row without labels) are relevant.
    exclude: interactions whose items are masked for their users: a list for every split, or a
             dict split -> list (e.g. {"valid": [train], "test": [train, valid]}).
    ks:      cut-offs; the top max(ks) is computed once per user batch.
    batch_size: users per scoring batch; by default chosen so the scores of one batch fit in
             `memory_budget_mb`.
    popularity: per-item popularity for avg_popularity (default: item counts of the first
             excluded data, i.e. the training set when it is listed first).
    sampled_negatives: when set, rank each user's relevant items among this many sampled
             negatives instead of all items (seeded by `seed`); keys become "<split>_sampled<n>/..."
             and `protocol["ranking"]` says "sampled". Beyond-accuracy metrics are not computed then.
    rank:    how the users' top-K lists are made, with `rank_users`'s signature; on several processes
             `recsys.evaluation.across_ranks.rank_share_and_gather` ranks this process's share and gathers the rest.
    """
    ks = _check_ks(ks)
    label = "" if sampled_negatives is None else f"_sampled{int(sampled_negatives)}"
    if sampled_negatives is not None and int(sampled_negatives) < 1:
        raise UserInputError(f"sampled_negatives must be a positive number of items, got {sampled_negatives}")
    splits = _prepare(truth, exclude, label)
    n_items = next(iter(truth.values())).n_items
    batch_size = int(batch_size or batch_size_for(n_items, memory_budget_mb))
    if batch_size < 1:
        raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
    all_users = np.unique(np.concatenate([s.users for s in splits]))
    if sampled_negatives is None:
        # Splits with the same exclusion (e.g. observed and clean test) share one ranking.
        groups = list(dict.fromkeys(s.exclusion for s in splits))
        candidates = [next(Candidates(s.hidden) for s in splits if s.exclusion == g) for g in groups]
        slot_of = [groups.index(s.exclusion) for s in splits]
    else:
        candidates = [Candidates(s.hidden, sample_candidates(s.users, s.relevant, s.hidden, int(sampled_negatives),
                                                             seed)) for s in splits]
        slot_of = list(range(len(splits)))
    tops = rank(scorer, all_users, ks[-1], candidates, n_items, batch_size, progress)
    per_split = [tops[slot][np.searchsorted(all_users, s.users)] for s, slot in zip(splits, slot_of)]
    exclusions = {s: len(d) for s, d in _exclusions(exclude, list(truth)).items()}
    protocol = (_protocol("full", ks, exclusions) if sampled_negatives is None else
                _protocol("sampled", ks, exclusions, negatives=int(sampled_negatives), seed=seed))
    return _result(splits, per_split, ks, _popularity(popularity, exclude, n_items),
                   sampled_negatives is None, protocol)


def evaluate_lists(recs: pd.DataFrame, truth: Mapping[str, InteractionData], exclude: Exclude = None,
                   ks: Sequence[int] | int = (10, 20), popularity=None, where: RowErrors | None = None,
                   ) -> EvaluationResult:
    """Score recommendation lists made elsewhere with the same protocol as `evaluate`.

    recs: columns user, item (outside ids, in the truth's vocabulary) and rank (ascending is
    better) or score (descending is better; equal scores by the lower internal item id).
    A user's excluded items are removed from their list (the rest move up), as full ranking
    would never show them; lists are then cut at max(ks). A user of the truth without a list
    counts with an empty list (all metrics 0). Removed rows and missing users are logged.
    """
    ks = _check_ks(ks)
    splits = _prepare(truth, exclude)
    vocab = next(iter(truth.values())).vocab
    list_users, lists = lists_from_frame(recs, vocab, where)
    tops, protocol_counts = [], {}
    for split in splits:
        rows = np.searchsorted(list_users, split.users)
        has_list = (rows < len(list_users)) & (list_users[np.minimum(rows, len(list_users) - 1)] == split.users
                                               if len(list_users) else np.zeros(len(split.users), bool))
        top = np.full((len(split.users), max(lists.shape[1], 1)), -1, dtype=np.int64)
        top[has_list, :lists.shape[1]] = lists[rows[has_list]]
        top, removed = _drop_hidden(top, split.users, split.hidden)
        split.counts.update(users_without_list=int((~has_list).sum()), excluded_items_removed=removed)
        if removed:
            log.info("split '%s': removed %d recommended items that are the users' excluded items",
                     split.name, removed)
        if (~has_list).any():
            log.warning("split '%s': %d of %d users have no recommendation list; they count with empty lists",
                        split.name, int((~has_list).sum()), len(split.users))
        tops.append(_fit_width(top, ks[-1]))
        protocol_counts[split.name] = split.counts
    exclusions = {s: len(d) for s, d in _exclusions(exclude, list(truth)).items()}
    protocol = _protocol("lists", ks, exclusions,
                         lists="outside lists; excluded items removed, then cut at max K")
    return _result(splits, tops, ks, _popularity(popularity, exclude, vocab.n_items), True, protocol)


def _drop_hidden(top: np.ndarray, users: np.ndarray, hidden: UserItemSet) -> tuple[np.ndarray, int]:
    """Remove excluded items from each list, moving the later items up."""
    hide = hidden.contains(users, top)
    if not hide.any():
        return top, 0
    keep = (top >= 0) & ~hide
    order = np.argsort(~keep, axis=1, kind="stable")
    compacted = np.take_along_axis(top, order, axis=1)
    compacted[~np.take_along_axis(keep, order, axis=1)] = -1
    return compacted, int(hide.sum())


def _fit_width(top: np.ndarray, k: int) -> np.ndarray:
    if top.shape[1] >= k:
        return top[:, :k]
    return np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)
