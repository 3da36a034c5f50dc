"""A pluralistic bundle over real HTTP: a new user placed from comparisons, without torch in the server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from bundleformat.pluralistic import place, softmax


@pytest.fixture(scope="module")
def pluralistic(tmp_path_factory):
    """A mixture model trained for a few epochs on a typed toy world, exported."""
    import pytorch_lightning as pl

    from recsys.data.datamodule import InteractionDataModule
    from recsys.export.cli import export_checkpoint
    from recsys.models.pluralistic import PluralisticRecommender

    root = tmp_path_factory.mktemp("pluralistic")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        datamodule = InteractionDataModule(world_preset="toy", world_options={"taste_types": 3}, batch_size=512,
                                           seed=0)
        pl.seed_everything(0, verbose=False)
        model = PluralisticRecommender(datamodule.n_users, datamodule.n_items, prototypes=3, embedding_dim=8,
                                       lr=0.03, eval_ks=[5])
        trainer = pl.Trainer(max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                             limit_val_batches=0)
        trainer.fit(model, datamodule=datamodule)
        trainer.save_checkpoint(root / "pluralistic.ckpt")
        bundle = export_checkpoint(root / "pluralistic.ckpt", root / "bundle", verify_sample=16)
    finally:
        torch.set_num_threads(threads)
    return bundle, model.eval(), datamodule


def test_numpy_placement_agrees_with_the_torch_placement():
    from recsys.models.pluralistic import place as torch_place

    rng = np.random.default_rng(0)
    for m in (1, 5, 20):
        diff = rng.normal(size=(6, m, 4)) * 2
        z0 = rng.normal(size=4) * 0.3
        expected = torch_place(torch.from_numpy(diff), torch.ones(6, m, dtype=torch.float64),
                               torch.from_numpy(z0), 0.5).numpy()
        for u in range(6):
            got = place(diff[u], z0, 0.5)
            np.testing.assert_allclose(softmax(got), softmax(expected[u]), atol=1e-6)


def test_comparisons_over_http_rank_like_the_torch_path_and_bad_ones_are_422(pluralistic, start_server):
    bundle, model, datamodule = pluralistic
    server = start_server(bundle)
    models = httpx.get(f"{server.url}/v1/models").json()["models"][0]
    assert models["kind"] == "pluralistic" and "comparisons" in models["query_kinds"]
    assert models["recommended_comparisons"] == 10
    ids = list(datamodule.split.train.vocab.items)
    rng = np.random.default_rng(3)
    n = len(ids)
    for _ in range(3):
        preferred, over = rng.choice(n, 10, replace=False), rng.choice(n, 10, replace=False)
        over = np.where(over == preferred, (over + 1) % n, over)
        body = {"comparisons": [{"preferred": ids[p], "over": ids[o]} for p, o in zip(preferred, over)],
                "k": n, "exclude_seen": False}
        reply = httpx.post(f"{server.url}/v1/recommend", json=body).json()
        assert reply["fallback"] == "comparisons" and not reply["user_known"]
        expected = model.score_placed(model.place_users(preferred[None], over[None]))[0].numpy()
        got = np.array([item["score"] for item in reply["items"]])
        positions = np.array([ids.index(item["item_id"]) for item in reply["items"]])
        np.testing.assert_allclose(got, expected[positions], atol=1e-5)
        assert np.all(np.diff(expected[positions]) <= 1e-5)  # the torch path ranks them in the same order

    bad = [([], "comparisons"), ([{"preferred": ids[0], "over": ids[0]}], "different"),
           ([{"preferred": "no-such-item", "over": ids[0]}], "comparisons\\[0\\].preferred"),
           ([{"preferred": ids[0], "over": ids[1]}, {"preferred": ids[1], "over": "nope"}],
            "comparisons\\[1\\].over")]
    for comparisons, named in bad:
        reply = httpx.post(f"{server.url}/v1/recommend", json={"comparisons": comparisons})
        assert reply.status_code == 422, reply.text
        assert pytest.importorskip("re").search(named, reply.text), reply.text


def test_a_micro_batch_places_its_users_together_as_each_alone(pluralistic):
    from serving.retrieval import Query, Retriever

    bundle, _, datamodule = pluralistic
    retriever = Retriever.load(bundle)
    ids = list(datamodule.split.train.vocab.items)
    rng = np.random.default_rng(7)
    queries = []
    for m in (1, 3, 10, 10, 20):
        pairs = rng.choice(len(ids), (m, 2), replace=False)
        queries.append(Query(comparisons=[{"preferred": ids[a], "over": ids[b]} for a, b in pairs], k=20))
    queries.append(Query(comparisons=[{"preferred": "no-such-item", "over": ids[0]}]))
    queries.append(Query(user_id=datamodule.split.train.vocab.users[0]))
    batched = retriever.recommend_many(queries)
    for query, answer in zip(queries[:5], batched):
        alone = retriever.recommend(query)
        assert answer.fallback == "comparisons"
        np.testing.assert_array_equal(answer.items, alone.items)
        np.testing.assert_allclose(answer.scores, alone.scores, atol=1e-6)
    assert isinstance(batched[5], Exception) and "comparisons[0].preferred" in str(batched[5])
    assert batched[6].user_known


def test_p99_latency_of_comparison_queries_under_load(pluralistic, start_server):
    """Eight concurrent clients, 10 comparisons each request; the p99 is printed (the target is 15 ms)."""
    bundle, _, datamodule = pluralistic
    server = start_server(bundle)
    ids = list(datamodule.split.train.vocab.items)
    rng = np.random.default_rng(4)
    bodies = []
    for _ in range(200):
        pairs = rng.choice(len(ids), (10, 2), replace=False) if len(ids) >= 20 else None
        bodies.append({"comparisons": [{"preferred": ids[a], "over": ids[b]} for a, b in pairs], "k": 10})

    def post(chunk):
        times = []
        with httpx.Client() as client:
            for body in chunk:
                started = time.perf_counter()
                reply = client.post(f"{server.url}/v1/recommend", json=body)
                times.append(time.perf_counter() - started)
                assert reply.status_code == 200
        return times

    with ThreadPoolExecutor(8) as pool:
        times = [t for chunk in pool.map(post, [bodies[i::8] for i in range(8)]) for t in chunk]
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    print(f"comparison queries under load (8 clients, {len(times)} requests): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert p99 < 1000  # a loose bound on a shared CPU; the measured p99 is reported, not asserted
