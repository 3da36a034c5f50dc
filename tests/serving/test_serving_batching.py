"""Micro-batched recommendations: the shared scan answers exactly what one query at a time answers,
and concurrent requests through the app each get their own right answer."""

import asyncio
import dataclasses
import json

import faiss
import httpx
import numpy as np
import pytest
from serving_helpers import CATEGORIES, N_ITEMS, N_USERS, copy_bundle, export, make_world, rewrite_file

from serving.app import create_app
from serving.batching import LoopBatcher, RecommendBatcher
from serving.retrieval import Query, QueryError, Retriever
from serving.settings import Settings, SettingsError


@pytest.fixture(scope="module")
def tied_world():
    """The shared world with exact ties: items 500..579 repeat items 0..79, so equal scores abound."""
    world = make_world(seed=11)
    items = world.items.copy()
    items[500:580] = items[0:80]
    return dataclasses.replace(world, items=items)


@pytest.fixture(scope="module")
def tied_retriever(tied_world, tmp_path_factory):
    return Retriever.load(export(tied_world, tmp_path_factory.mktemp("tied") / "flat"))


def random_queries(world, rng, count: int) -> list[Query]:
    queries = []
    for position in range(count):
        known = position % 5 != 0
        filters = {}
        roll = rng.random()
        if roll < 0.15:
            filters["include_categories"] = list(rng.choice(CATEGORIES, size=int(rng.integers(1, 3)), replace=False))
        elif roll < 0.3:
            filters["exclude_categories"] = [str(rng.choice(CATEGORIES))]
        queries.append(Query(
            user_id=f"user-{rng.integers(0, N_USERS)}" if known else None,
            recent_items=() if known else [f"item-{i}" for i in rng.integers(0, N_ITEMS, size=rng.integers(1, 6))],
            # k beyond the allowed set happens with include filters and k up to all items
            k=int(rng.choice([1, 5, 10, 37, 200, N_ITEMS])),
            exclude_seen=bool(rng.random() < 0.8),
            exclude_items=[f"item-{i}" for i in rng.integers(0, N_ITEMS, size=rng.integers(0, 40))],
            **filters))
    return queries


def reference(world, query: Query) -> np.ndarray:
    """Brute force in float64: the allowed items best first, ties by the lower index."""
    if query.user_id is not None:
        user = int(query.user_id.split("-")[1])
        vector, seen = world.users[user], world.seen(user)
    else:
        recent = np.array([int(i.split("-")[1]) for i in query.recent_items])
        vector, seen = world.items[recent].astype(np.float64).mean(axis=0), recent
    allowed = np.ones(N_ITEMS, bool)
    categories = np.array(world.categories)
    if query.include_categories:
        allowed &= np.isin(categories, query.include_categories)
    allowed &= ~np.isin(categories, query.exclude_categories)
    allowed[[int(i.split("-")[1]) for i in query.exclude_items]] = False
    if query.exclude_seen:
        allowed[seen] = False
    ids = np.flatnonzero(allowed)
    scores = world.items[ids].astype(np.float64) @ np.asarray(vector, np.float64)
    return ids[np.lexsort((ids, -scores))][:query.k]


def test_batched_answers_equal_single_query_answers_bit_for_bit(tied_world, tied_retriever, monkeypatch):
    rng = np.random.default_rng(0)
    queries = random_queries(tied_world, rng, 120)
    scan, certified = tied_retriever.batch_scan.search, []

    def counting_scan(vectors, ks, allowed):
        answers = scan(vectors, ks, allowed)
        certified.extend(answer is not None for answer in answers)
        return answers

    monkeypatch.setattr(tied_retriever.batch_scan, "search", counting_scan)
    single = [tied_retriever.recommend(query) for query in queries]
    for size, max_excluded in ((24, N_ITEMS), (7, 40)):
        certified.clear()
        batched = []
        for start in range(0, len(queries), size):
            batched += tied_retriever.recommend_many(queries[start:start + size], max_excluded=max_excluded, min_shared=2)
        for one, many in zip(single, batched):
            assert not isinstance(many, Exception), many
            np.testing.assert_array_equal(many.items, one.items)
            np.testing.assert_array_equal(many.scores, one.scores)  # the same bits, not just close
            assert (many.user_known, many.fallback, many.warnings) == (one.user_known, one.fallback, one.warnings)
        if max_excluded == N_ITEMS:  # every query went through the shared scan, and nearly all were certified there
            assert len(certified) == len(queries) and sum(certified) >= 0.9 * len(queries)
    # and both agree with brute force (including the ties, broken by the lower index)
    for query, one in zip(queries, single):
        np.testing.assert_array_equal(one.items, reference(tied_world, query))


def test_a_failing_query_fails_only_itself(tied_retriever):
    queries = [Query(user_id="user-1"), Query(user_id="user-2", include_categories=["no-such-category"]),
               Query(user_id="user-3", k=3), *[Query(user_id=f"user-{u}") for u in range(4, 12)]]
    answers = tied_retriever.recommend_many(queries, min_shared=2)
    assert isinstance(answers[1], QueryError)
    for query, answer in zip(queries[:1] + queries[2:], answers[:1] + answers[2:]):
        np.testing.assert_array_equal(answer.items, tied_retriever.recommend(query).items)


def test_approximate_bundles_answer_one_by_one_unchanged(bundle_dir, world, tmp_path):
    # An HNSW bundle has no shared scan: recommend_many equals recommend query by query.
    bundle = copy_bundle(bundle_dir, tmp_path / "hnsw")
    index = faiss.IndexHNSWFlat(world.items.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    index.add(world.items)
    faiss.write_index(index, str(tmp_path / "hnsw.faiss"))
    rewrite_file(bundle, "item_index.faiss", (tmp_path / "hnsw.faiss").read_bytes())
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["index"] = {"kind": "hnsw", "params": {"m": 8, "ef_search": 16}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    hnsw = Retriever.load(bundle)
    assert hnsw.batch_scan is None
    queries = random_queries(world, np.random.default_rng(3), 30)
    for query, answer in zip(queries, hnsw.recommend_many(queries, min_shared=2)):
        one = hnsw.recommend(query)
        np.testing.assert_array_equal(answer.items, one.items)
        np.testing.assert_array_equal(answer.scores, one.scores)


async def _concurrent_requests(app, bodies: list[dict]) -> tuple[list[httpx.Response], str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(client.post("/v1/recommend", json=body) for body in bodies))
        metrics = (await client.get("/metrics")).text
    return list(responses), metrics


@pytest.mark.parametrize("runner", ["thread", "loop"])
def test_concurrent_requests_through_the_app_get_their_own_answers(tied_world, tied_retriever, tmp_path, runner):
    settings = Settings(bundle=str(tied_retriever.data.path), feedback_db=str(tmp_path / "events.sqlite"),
                        batch_min_shared=2, batch_window_ms=5.0, batch_runner=runner)
    app = create_app(settings, tied_retriever)
    rng = np.random.default_rng(5)
    bodies = [{"user_id": f"user-{u}", "k": int(rng.integers(1, 30)),
               "filters": {"exclude_items": [f"item-{i}" for i in rng.integers(0, N_ITEMS, size=5)]}}
              for u in rng.integers(0, N_USERS, size=48)]
    bodies[7] = {"user_id": "user-7", "filters": {"include_categories": ["no-such-category"]}}
    responses, metrics = asyncio.run(_concurrent_requests(app, bodies))
    for position, (body, response) in enumerate(zip(bodies, responses)):
        if position == 7:
            assert response.status_code == 422 and "unknown categories" in response.json()["detail"]
            continue
        assert response.status_code == 200, response.text
        expected = tied_retriever.recommend(Query(user_id=body["user_id"], k=body["k"],
                                                  exclude_items=body["filters"]["exclude_items"]))
        assert [item["item_id"] for item in response.json()["items"]] == [f"item-{i}" for i in expected.items]
        assert [item["score"] for item in response.json()["items"]] == expected.scores.tolist()
    count = _sample(metrics, "serving_recommend_batch_size_count")
    assert _sample(metrics, "serving_recommend_batch_size_sum") == 48
    assert count < 48  # some queries were answered together
    assert 'serving_requests_total{endpoint="/v1/recommend",method="POST",status="200"} 47.0' in metrics


def _sample(metrics: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name + " "))


def test_with_batching_off_the_app_answers_inline(tied_retriever, tmp_path):
    settings = Settings(bundle=str(tied_retriever.data.path), feedback_db=str(tmp_path / "events.sqlite"),
                        batching=False)
    responses, metrics = asyncio.run(_concurrent_requests(create_app(settings, tied_retriever),
                                                          [{"user_id": "user-3", "k": 4}] * 6))
    expected = [f"item-{i}" for i in tied_retriever.recommend(Query(user_id="user-3", k=4)).items]
    assert all([item["item_id"] for item in r.json()["items"]] == expected for r in responses)
    assert _sample(metrics, "serving_recommend_batch_size_count") == 0


def test_a_lone_client_does_not_wait_for_the_window(tied_retriever):
    batcher = RecommendBatcher(max_size=32, window_s=0.5, max_excluded=1024, min_shared=2)

    async def one_at_a_time() -> float:
        await batcher.recommend(tied_retriever, Query(user_id="user-1"))  # starts the thread
        loop = asyncio.get_running_loop()
        start = loop.time()
        for user in range(5):
            await batcher.recommend(tied_retriever, Query(user_id=f"user-{user}"))
        return loop.time() - start

    try:
        assert asyncio.run(one_at_a_time()) < 0.5  # five windows would be 2.5 s
    finally:
        batcher.close()


def test_the_worker_thread_runs_faiss_with_the_configured_threads(tied_retriever):
    # OpenMP's thread count is per thread; a new thread would otherwise use every core.
    seen = []

    class Spy:
        def recommend_many(self, queries, max_excluded, min_shared):
            seen.append(faiss.omp_get_max_threads())
            return [tied_retriever.recommend(query) for query in queries]

    batcher = RecommendBatcher(max_size=4, window_s=0.0, max_excluded=0, min_shared=2, threads=1)
    try:
        asyncio.run(batcher.recommend(Spy(), Query(user_id="user-1")))
    finally:
        batcher.close()
    assert seen == [1]


def test_the_loop_runner_batches_queries_that_arrive_together(tied_retriever):
    sizes = []
    batcher = LoopBatcher(max_size=5, max_excluded=1024, min_shared=2, observe_batch=sizes.append)

    async def burst():
        return await asyncio.gather(*(batcher.recommend(tied_retriever, Query(user_id=f"user-{u}", k=3))
                                      for u in range(12)))

    answers = asyncio.run(burst())
    assert sizes == [5, 5, 2]
    for user, answer in enumerate(answers):
        np.testing.assert_array_equal(answer.items, tied_retriever.recommend(Query(user_id=f"user-{user}", k=3)).items)


def test_batching_settings_are_checked():
    with pytest.raises(SettingsError, match="batch_window_ms"):
        Settings(bundle=".", batch_window_ms=-1.0)
    with pytest.raises(SettingsError, match="batch_max_size"):
        Settings(bundle=".", batch_max_size=0)
    with pytest.raises(SettingsError, match="batching"):
        Settings(bundle=".", batching=1)
    with pytest.raises(SettingsError, match="batch_runner"):
        Settings(bundle=".", batch_runner="process")
    assert Settings.from_mapping({"bundle": ".", "batching": False}).batching is False
