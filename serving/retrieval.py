"""Answer a recommendation query from a loaded bundle: who the query is, then which part of the bundle scores it.

Who the query is, in order of precedence (the first that applies):
1. a known user (`user_id` in the bundle's vocabulary);
2. a profile (traits, demographics, tastes), when the bundle has a ranker graph (a personality
   model): flagged `fallback="profile"`;
3. pairwise comparisons, when the bundle has taste prototypes (a pluralistic model): the user is
   placed among them (`serving.comparisons`) and the placed vector searched, `fallback="comparisons"`;
4. recent items: flagged `fallback="recent_items"`;
5. stated preferences alone, when the bundle's generative model reads them (Mender): flagged
   `fallback="preferences"`;
6. nobody: the most popular items of the training data (`fallback="popularity"`).

What scores it (`Ranking.scorer`):
- "generative": a generative bundle (TIGER/Mender) generates the items by beam search from the
  user's history (a known user's recent training items, or the recent items) and, for Mender, the
  encoded preference sentences (`serving.generative`);
- "ranker": a profile through the personality ranker graph, every item scored (`serving.profile`);
- "embedding": the user tower's vector of a known user, or the sequence tower's mean vector of the
  recent items, searched in the faiss index;
- "popularity": training counts.
Parts of a query a bundle cannot read (preferences without a Mender model, a profile without a
ranker) are ignored with a message in `Ranking.warnings`, never an error.

Filters (categories to include or exclude, items to exclude, the user's training items) become
one allowed-items bitmap handed to faiss as an `IDSelector`, so the index itself ranks only allowed
items and a flat index stays exact under any filter. A flat index is searched through a certified
float16 scan first (`serving.halfscan`: exact answers at half the memory traffic), falling back to
a certified float32 scan and, failing that, to scoring every allowed item. Every exact answer is
ranked by `serving.halfscan.exact_scores`, ties by the lower item index. An approximate index
(HNSW, IVF) may return fewer than k items under a narrow filter; then the allowed items are re-scored exactly.

`recommend_many` answers several queries at once (the server's micro-batches): on a flat index,
the embedding queries whose exclusions are few share one float32 matrix product over the items
(`CertifiedBatchScan`), each still exact and equal to what `recommend` returns; the others take
the single-query path. A query that fails yields its exception in its own slot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import onnxruntime as ort

from bundleformat.manifest import BundleError
from serving.bundle import BundleData, load_bundle_data
from serving.comparisons import encode_comparisons, load_placement
from serving.generative import GenerativeRanker
from serving.halfscan import CertifiedBatchScan, CertifiedHalfScan, best_exact, certified_top_k
from serving.profile import Profile, ProfileError, ProfileRanker

log = logging.getLogger(__name__)


class QueryError(ValueError):
    """A query this bundle cannot answer as asked (an unknown category); the API turns it into a 422."""


@dataclass(frozen=True)
class Query:
    user_id: str | None = None
    recent_items: Sequence[str] = ()
    k: int = 10
    exclude_seen: bool = True
    include_categories: Sequence[str] = ()
    exclude_categories: Sequence[str] = ()
    exclude_items: Sequence[str] = ()
    profile: Profile | None = None
    preferences: Sequence[str] = ()
    comparisons: Sequence[Mapping[str, str]] | None = None  # [{"preferred": item, "over": item}, ...]


@dataclass
class Ranking:
    items: np.ndarray  # item indices, best first
    scores: np.ndarray  # float32, same order
    user_known: bool
    fallback: str | None  # None, "profile", "recent_items", "preferences" or "popularity"
    warnings: list[str] = field(default_factory=list)
    scorer: str = "embedding"  # "embedding", "ranker", "generative" or "popularity"


@dataclass
class _Search:
    """An embedding query prepared up to its vector search (which may run batched with others)."""

    user: int  # a known user's index, or -1 for a query by recent items
    recent: np.ndarray
    k: int
    allowed: np.ndarray | None
    fallback: str | None
    warnings: list[str]
    vector: np.ndarray | None = None  # a query vector already known (a user placed from comparisons)

    @property
    def user_known(self) -> bool:
        return self.user >= 0


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # One thread per request: the server gets its parallelism from concurrent requests and workers.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def _session(path: Path, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"])


def _check_io(bundle: Path, name: str, session: ort.InferenceSession, inputs: dict[str, str], output: str) -> None:
    found = {i.name: i.type for i in session.get_inputs()}
    if found != inputs:
        raise BundleError(bundle, f"{name}: inputs are {found}, expected {inputs}")
    outputs = [o.name for o in session.get_outputs()]
    if outputs != [output]:
        raise BundleError(bundle, f"{name}: outputs are {outputs}, expected ['{output}']")


class Retriever:
    """Everything needed to answer queries from one bundle. Immutable once built; safe to share across threads."""

    def __init__(self, data: BundleData, threads: int = 1):
        self.data = data
        path, manifest = data.path, data.manifest
        self.user_index = {u: i for i, u in enumerate(data.user_ids)}
        self.item_index = {v: i for i, v in enumerate(data.item_ids)}
        self.user_tower = _session(path / "user_tower.onnx", threads)
        self.sequence_tower = _session(path / "sequence_tower.onnx", threads)
        _check_io(path, "user_tower.onnx", self.user_tower, {"user_index": "tensor(int64)"}, "user_vector")
        _check_io(path, "sequence_tower.onnx", self.sequence_tower,
                  {"item_index": "tensor(int64)", "mask": "tensor(float)"}, "query_vector")
        try:
            self.index = faiss.read_index(str(path / "item_index.faiss"))
        except RuntimeError as error:
            raise BundleError(path, f"item_index.faiss cannot be read by faiss {faiss.__version__}: "
                                    f"{str(error).splitlines()[0]}") from None
        if self.index.ntotal != data.n_items or self.index.d != data.dim:
            raise BundleError(path, f"item_index.faiss holds {self.index.ntotal} vectors of dimension {self.index.d}, "
                                    f"manifest says {data.n_items} x {data.dim}")
        if self.index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise BundleError(path, "item_index.faiss must rank by inner product")
        self.exact = manifest["index"].get("kind", "flat") == "flat"
        self.search_params = self._search_params(manifest["index"].get("params", {}))
        self.half_scan = self._half_scan() if self.exact else None
        flat = faiss.downcast_index(self.index) if self.exact else None
        self.batch_scan = (CertifiedBatchScan(flat, self._flat_vectors(flat))
                           if isinstance(flat, faiss.IndexFlat) else None)
        names, codes = np.unique(np.asarray(data.categories, dtype=object).astype(str), return_inverse=True)
        self.category_names = [str(c) for c in names]
        self.items_by_category = {c: np.flatnonzero(codes == j) for j, c in enumerate(self.category_names)}
        # Stable: equally popular items keep catalog order, so the fallback is deterministic.
        self.popularity_order = np.argsort(-data.item_popularity, kind="stable")
        self._smoke_test()
        graphs = manifest.get("graphs", {})
        self.ranker = ProfileRanker(data, _options(threads)) if isinstance(graphs, dict) and "ranker" in graphs else None
        self.generative = GenerativeRanker(data, threads) if "generative" in manifest else None
        self.placement = load_placement(data)

    @property
    def query_kinds(self) -> list[str]:
        """What a request may use to say who it is for, as this bundle reads it."""
        kinds = ["user_id", "recent_items"]
        if self.ranker is not None:
            kinds.append("profile")
        if self.generative is not None and self.generative.reads_preferences:
            kinds.append("preferences")
        if self.placement is not None:
            kinds.append("comparisons")
        return kinds

    @classmethod
    def load(cls, bundle_dir: Path | str, verify: bool = True, threads: int = 1, key: bytes | None = None) -> Retriever:
        """Validate and load a bundle (with a `key`, only a signed one). Whatever fails - a graph ONNX Runtime
        cannot parse, an index faiss cannot read, a malformed section - is a BundleError naming the bundle."""
        data = load_bundle_data(bundle_dir, verify=verify, key=key)
        try:
            return cls(data, threads=threads)
        except BundleError:
            raise
        except Exception as error:  # noqa: BLE001 - the libraries below raise anything on a malformed file
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise BundleError(data.path, f"cannot be loaded ({type(error).__name__}: {first})") from None

    def _search_params(self, params: dict) -> dict:
        """Search-time knobs of an approximate index, applied per query (the index file may not keep them)."""
        if isinstance(self.index, faiss.IndexHNSW) and "ef_search" in params:
            return {"efSearch": int(params["ef_search"])}
        if isinstance(self.index, faiss.IndexIVF) and "nprobe" in params:
            return {"nprobe": int(params["nprobe"])}
        return {}

    def _half_scan(self) -> CertifiedHalfScan | None:
        """The flat index's own float32 storage (no copy) behind a certified float16 scan."""
        flat = faiss.downcast_index(self.index)
        if not isinstance(flat, faiss.IndexFlat):
            return None
        scan = CertifiedHalfScan(self._flat_vectors(flat))
        return scan if scan.usable else None

    def _flat_vectors(self, flat: faiss.IndexFlat) -> np.ndarray:
        n, dim = self.data.n_items, self.data.dim
        return faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)

    def _smoke_test(self) -> None:
        """The towers run and agree with the stored item vectors, so a mismatched bundle fails at load."""
        path, data = self.data.path, self.data
        probe = np.arange(min(8, data.n_items), dtype=np.int64)
        mean = self.sequence_tower.run(None, {"item_index": probe[:, None], "mask": np.ones((len(probe), 1), np.float32)})[0]
        if mean.shape != (len(probe), data.dim) or not np.allclose(mean, data.item_vectors[probe], atol=1e-5):
            raise BundleError(path, "sequence_tower.onnx does not reproduce item_vectors.npy")
        if len(data.user_ids):
            vector = self.user_vectors(np.array([0], dtype=np.int64))
            if vector.shape != (1, data.dim) or not np.isfinite(vector).all():
                raise BundleError(path, f"user_tower.onnx returns {vector.shape}, expected (1, {data.dim}) finite")

    # query vectors -----------------------------------------------------------------------------
    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        return self.user_tower.run(None, {"user_index": users.astype(np.int64, copy=False)})[0]

    def sequence_vectors(self, items: np.ndarray) -> np.ndarray:
        """Mean item vector of one item sequence (1-D item indices) -> (1, dim)."""
        return self.sequence_tower.run(None, {"item_index": items[None, :].astype(np.int64, copy=False),
                                              "mask": np.ones((1, len(items)), np.float32)})[0]

    # filters -------------------------------------------------------------------------------------
    def categories_or_error(self, names: Sequence[str]) -> list[np.ndarray]:
        unknown = [c for c in names if c not in self.items_by_category]
        if unknown:
            shown = ", ".join(self.category_names[:20]) + (" ..." if len(self.category_names) > 20 else "")
            raise QueryError(f"unknown categories {unknown}; this bundle has: {shown}")
        return [self.items_by_category[c] for c in names]

    def _encode_items(self, outside: Sequence[str], what: str, warnings: list[str]) -> np.ndarray:
        found = [self.item_index.get(item, -1) for item in outside]
        unknown = [item for item, i in zip(outside, found) if i < 0]
        if unknown:
            warnings.append(f"{len(unknown)} unknown item id(s) in {what} ignored: {unknown[:5]}")
        return np.array([i for i in found if i >= 0], dtype=np.int64)

    def _allowed(self, query: Query, excluded: np.ndarray) -> np.ndarray | None:
        """Boolean mask of the items a query may return, or None when every item may."""
        include = self.categories_or_error(query.include_categories)
        exclude = self.categories_or_error(query.exclude_categories)
        if not include and not exclude and not len(excluded):
            return None
        if include:
            allowed = np.zeros(self.data.n_items, dtype=bool)
            for members in include:
                allowed[members] = True
        else:
            allowed = np.ones(self.data.n_items, dtype=bool)
        for members in exclude:
            allowed[members] = False
        allowed[excluded] = False
        return allowed

    # ranking ---------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for one query vector among the allowed ones, best first."""
        n_allowed = self.data.n_items if allowed is None else int(allowed.sum())
        k = min(k, n_allowed)
        if k == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        params = dict(self.search_params)
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")  # faiss reads bit i of byte i >> 3
            params["sel"] = faiss.IDSelectorBitmap(self.data.n_items, faiss.swig_ptr(bitmap))
        if self.half_scan is not None:
            answer = self.half_scan.search(vector, k, n_allowed, faiss.SearchParameters(**params) if params else None)
            if answer is not None:
                return answer
        if self.batch_scan is not None:
            return self._flat_float32(vector, k, n_allowed, allowed, faiss.SearchParameters(**params) if params else None)
        search_params = self._params_class()(**params) if params else None
        scores, items = self.index.search(vector, k, params=search_params)
        scores, items = scores[0], items[0]
        found = items >= 0
        if found.sum() < k:  # an approximate index ran out of candidates under the filter
            return self._exact(vector[0], k, allowed)
        return items.astype(np.int64), scores

    def _params_class(self):
        if isinstance(self.index, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW
        if isinstance(self.index, faiss.IndexIVF):
            return faiss.SearchParametersIVF
        return faiss.SearchParameters

    def _flat_float32(self, vector: np.ndarray, k: int, n_allowed: int, allowed: np.ndarray | None,
                      params) -> tuple[np.ndarray, np.ndarray]:
        """The flat index's float32 scan, certified like the float16 one; every allowed item scored when even
        that cannot certify (a crowd of near-ties), so the answer is always `exact_scores`' top-k."""
        wide = min(2 * k + 16, n_allowed)
        approximate, ids = self.index.search(vector, wide, params=params)
        found = ids[0] >= 0
        approximate, ids = approximate[0][found], ids[0][found].astype(np.int64)
        unseen = float(approximate[-1]) if 0 < len(ids) < n_allowed else None
        delta = float(np.linalg.norm(vector)) * self.batch_scan.slack
        answer = certified_top_k(self.batch_scan.vectors, vector[0], approximate, ids, k, unseen, delta)
        return answer if answer is not None else self._exact(vector[0], k, allowed)

    def _exact(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        candidates = np.arange(self.data.n_items) if allowed is None else np.flatnonzero(allowed)
        vectors = self.batch_scan.vectors if self.batch_scan is not None else self.data.item_vectors
        return best_exact(vectors, candidates, vector, k)

    def _popular(self, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        order = self.popularity_order if allowed is None else self.popularity_order[allowed[self.popularity_order]]
        top = order[:k]
        return top.astype(np.int64), self.data.item_popularity[top].astype(np.float32)

    def recommend(self, query: Query) -> Ranking:
        prepared = self._prepare(query)
        if isinstance(prepared, Ranking):
            return prepared
        if prepared.vector is not None:
            vector = prepared.vector[None, :]
        else:
            vector = (self.user_vectors(np.array([prepared.user])) if prepared.user_known
                      else self.sequence_vectors(prepared.recent))
        return self._ranking(prepared, *self.search(vector, prepared.k, prepared.allowed))

    def recommend_many(self, queries: Sequence[Query], max_excluded: int = 1024,
                       min_shared: int = 6) -> list[Ranking | Exception]:
        """`recommend` of each query, in order; a query that fails gets its exception in its slot.

        When at least `min_shared` embedding queries on a flat index exclude at most `max_excluded`
        items each, they share one certified float32 scan (the same answers as `recommend`); the
        others run one by one. (The float32 scan reads twice the bytes of one float16 scan plus a
        fixed cost of a few milliseconds, so it pays from about 6 queries on; bench_serving measures it.)"""
        results: list[Ranking | Exception | None] = [None] * len(queries)
        searches: list[tuple[int, _Search]] = []
        placed = self._place_many(queries)
        for position, query in enumerate(queries):
            try:
                prepared = self._prepare(query, placed.get(position))
            except Exception as error:  # noqa: BLE001 - one bad query must not fail the batch
                results[position] = error
                continue
            if isinstance(prepared, Ranking):
                results[position] = prepared
            else:
                searches.append((position, prepared))
        answers = self._search_many([search for _, search in searches], max_excluded, min_shared)
        for (position, _), answer in zip(searches, answers):
            results[position] = answer
        return results

    def _search_many(self, searches: list[_Search], max_excluded: int, min_shared: int) -> list[Ranking | Exception]:
        vectors = self._query_vectors(searches)
        answers: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(searches)
        shared, ks = [], []
        if self.batch_scan is not None:
            for j, search in enumerate(searches):
                n_allowed = self.data.n_items if search.allowed is None else int(search.allowed.sum())
                if (not isinstance(vectors[j], Exception) and self.data.n_items - n_allowed <= max_excluded
                        and min(search.k, n_allowed) > 0):
                    shared.append(j)
                    ks.append(min(search.k, n_allowed))
        if len(shared) >= max(2, min_shared):
            try:
                batched = self.batch_scan.search(np.stack([vectors[j] for j in shared]), ks,
                                                 [searches[j].allowed for j in shared])
            except Exception:  # noqa: BLE001 - the single-query path below answers them instead
                log.exception("batched scan of %d queries failed; answering them one by one", len(shared))
                batched = [None] * len(shared)
            for j, answer in zip(shared, batched):
                answers[j] = answer
        results: list[Ranking | Exception] = []
        for j, search in enumerate(searches):
            if isinstance(vectors[j], Exception):
                results.append(vectors[j])
                continue
            try:
                answer = answers[j] or self.search(vectors[j][None, :], search.k, search.allowed)
                results.append(self._ranking(search, *answer))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results

    def _query_vectors(self, searches: list[_Search]) -> list[np.ndarray | Exception]:
        """Each search's query vector (dim,), or the exception computing it raised."""
        vectors: list[np.ndarray | Exception] = [np.empty(0, np.float32)] * len(searches)
        known = [j for j, search in enumerate(searches) if search.user_known]
        if known:
            try:  # the user tower is a lookup table (Gather): a row comes out the same in a batch as alone
                rows = list(self.user_vectors(np.array([searches[j].user for j in known])))
            except Exception:  # noqa: BLE001 - retry one by one, so only a failing query fails
                rows = [self._vector_or_error(searches[j]) for j in known]
            for j, row in zip(known, rows):
                vectors[j] = row
        for j, search in enumerate(searches):
            if not search.user_known:
                vectors[j] = self._vector_or_error(search)
        return vectors

    def _vector_or_error(self, search: _Search) -> np.ndarray | Exception:
        try:
            if search.vector is not None:
                return search.vector
            if search.user_known:
                return self.user_vectors(np.array([search.user]))[0]
            return self.sequence_vectors(search.recent)[0]
        except Exception as error:  # noqa: BLE001
            return error

    @staticmethod
    def _ranking(search: _Search, items: np.ndarray, scores: np.ndarray) -> Ranking:
        return Ranking(items, scores, search.user_known, search.fallback, search.warnings)

    def _place_many(self, queries: Sequence[Query]) -> dict[int, np.ndarray]:
        """Query vectors of the queries `_prepare` would place from comparisons, placed together (one
        vectorised solve answers a micro-batch as each query alone); a query whose comparisons do not
        encode is left out, and `_prepare` reports its error."""
        if self.placement is None:
            return {}
        wanted: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for position, query in enumerate(queries):
            if (query.comparisons is None or (query.user_id is not None and query.user_id in self.user_index)
                    or (query.profile is not None and self.ranker is not None)):
                continue
            try:
                wanted[position] = encode_comparisons(query.comparisons, self.item_index, QueryError)
            except QueryError:
                continue
        if len(wanted) < 2:
            return {}
        try:
            vectors = self.placement.query_many(list(wanted.values())).astype(np.float32)
        except Exception:  # noqa: BLE001 - each query is then placed alone, and fails alone
            log.exception("placing %d queries together failed; placing them one by one", len(wanted))
            return {}
        return dict(zip(wanted, vectors))

    def _prepare(self, query: Query, placed: np.ndarray | None = None) -> Ranking | _Search:
        """Everything of a query but its vector search: a finished Ranking, or the search still to run."""
        warnings: list[str] = []
        user = self.user_index.get(query.user_id, -1) if query.user_id is not None else -1
        recent = self._encode_items(query.recent_items, "recent_items", warnings)
        exclude_items = self._encode_items(query.exclude_items, "filters.exclude_items", warnings)
        excluded = [exclude_items]
        if query.exclude_seen:
            if user >= 0:
                excluded.append(self.data.seen_indices[self.data.seen_indptr[user]:self.data.seen_indptr[user + 1]])
            excluded.append(recent)
        allowed = self._allowed(query, np.concatenate(excluded))
        preferences = self._readable_preferences(query.preferences, warnings)
        profile = query.profile
        if profile is not None and self.ranker is None:
            warnings.append("profile ignored: this bundle has no ranker graph (only a personality model reads profiles)")
            profile = None
        if user >= 0:
            if profile is not None:
                warnings.append("profile ignored: user_id is a known user")
            if self.generative is not None:
                items, scores = self._generate(self.generative.user_history(user), preferences, query.k, allowed)
                return Ranking(items, scores, True, None, warnings, "generative")
            return _Search(user, recent, query.k, allowed, None, warnings)
        if query.user_id is not None:
            warnings.append(f"unknown user_id {query.user_id!r}")
        if profile is not None:
            try:
                scores = self.ranker.scores(profile, warnings)
            except ProfileError as error:
                raise QueryError(str(error)) from None
            if not np.isfinite(scores).all():
                raise QueryError("the profile drives the ranker's scores to infinity; send values on the scale "
                                 "the model was trained on")
            candidates = np.arange(self.data.n_items) if allowed is None else np.flatnonzero(allowed)
            items, scores = _best(candidates, scores[candidates], query.k)
            return Ranking(items, scores, False, "profile", warnings, "ranker")
        if query.comparisons is not None:
            if self.placement is None:
                warnings.append("comparisons ignored: this bundle has no taste prototypes (only a pluralistic "
                                "model places users from comparisons)")
            else:
                if placed is None:
                    preferred, over = encode_comparisons(query.comparisons, self.item_index, QueryError)
                    placed = self.placement.query(preferred, over)[0].astype(np.float32)
                return _Search(-1, recent, query.k, allowed, "comparisons", warnings, placed)
        if self.generative is not None and (len(recent) or preferences):
            items, scores = self._generate(recent, preferences, query.k, allowed)
            return Ranking(items, scores, False, "recent_items" if len(recent) else "preferences", warnings,
                           "generative")
        if len(recent):
            return _Search(-1, recent, query.k, allowed, "recent_items", warnings)
        items, scores = self._popular(query.k, allowed)
        return Ranking(items, scores, False, "popularity", warnings, "popularity")

    def _readable_preferences(self, preferences: Sequence[str], warnings: list[str]) -> list[str]:
        """The preference sentences this bundle's model reads; the others are named in a warning."""
        if not preferences:
            return []
        if self.generative is None:
            warnings.append("preferences ignored: this bundle has no generative model that reads them "
                            "(export a Mender model to serve stated preferences)")
            return []
        if not self.generative.reads_preferences:
            warnings.append(f"preferences ignored: this bundle's generative model is "
                            f"{self.generative.spec['variant']}, which does not read stated preferences")
            return []
        limit = int(self.generative.spec["max_preferences"])
        if len(preferences) > limit:
            warnings.append(f"preferences: only the first {limit} are read by this model")
        return list(preferences)[:limit]

    def _generate(self, history: np.ndarray, preferences: list[str], k: int,
                  allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        items, scores = self.generative.rank(history, preferences, k, None if allowed is None else ~allowed)
        return items.astype(np.int64), scores.astype(np.float32)


def _best(candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates by score, ties by the lower item index."""
    order = np.lexsort((candidates, -scores))[:k]
    return candidates[order].astype(np.int64), np.asarray(scores[order], dtype=np.float32)
