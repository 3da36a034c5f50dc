"""Retrieval with an approximate index: narrow filters fall back to exact scoring of the allowed items."""

import json

import faiss
import numpy as np
import pytest
from serving_helpers import N_ITEMS, copy_bundle, rewrite_file

from serving.retrieval import Query, Retriever


@pytest.fixture(scope="module")
def hnsw_bundle(bundle_dir, world, tmp_path_factory):
    bundle = copy_bundle(bundle_dir, tmp_path_factory.mktemp("hnsw") / "bundle")
    index = faiss.IndexHNSWFlat(world.items.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    index.add(world.items)
    path = bundle / "hnsw.tmp"
    faiss.write_index(index, str(path))
    payload = path.read_bytes()
    path.unlink()
    rewrite_file(bundle, "item_index.faiss", payload)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["index"] = {"kind": "hnsw", "params": {"m": 8, "ef_search": 16}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_search_params_come_from_the_manifest(hnsw_bundle):
    retriever = Retriever.load(hnsw_bundle)
    assert not retriever.exact and retriever.search_params == {"efSearch": 16}


def test_a_narrow_filter_still_returns_the_exact_ranking_of_what_is_allowed(hnsw_bundle, world, monkeypatch):
    retriever = Retriever.load(hnsw_bundle)
    exact_calls = []
    real_exact = retriever._exact
    monkeypatch.setattr(retriever, "_exact", lambda *a: exact_calls.append(1) or real_exact(*a))
    tools = [i for i in range(N_ITEMS) if world.categories[i] == "tools"]
    keep = tools[:40]
    exclude = [world.item_ids[i] for i in tools[40:]]
    answers = [retriever.recommend(Query(user_id=world.user_ids[u], k=40, exclude_seen=False,
                                         include_categories=["tools"], exclude_items=exclude)) for u in range(30)]
    for user, answer in enumerate(answers):
        scores = world.items[keep].astype(np.float64) @ world.users[user].astype(np.float64)
        expected = [keep[i] for i in np.argsort(-scores, kind="stable")]
        assert answer.items.tolist() == expected
    assert exact_calls, "the filter was meant to starve the graph search at least once"


def test_without_filters_the_approximate_index_answers_itself(hnsw_bundle, world):
    retriever = Retriever.load(hnsw_bundle)
    answer = retriever.recommend(Query(user_id="user-0", k=10, exclude_seen=False))
    exact = np.argsort(-(world.items @ world.users[0]))[:10]
    assert len(set(answer.items.tolist()) & set(exact.tolist())) >= 8
