"""Generative retrieval in the server: its one-query search (an excluded-item mask, only existing items
returned) equals the batched search the torch model runs, and an exported TIGER bundle answers in the
server exactly as the torch model does (items, scores, exclusions)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from bundleformat.beam_search import PrefixTrie, beam_search
from recsys.export.generative import OnnxGenerativeRetriever, export_generative
from recsys.models.generative import GenerativeRetriever
from recsys.models.semantic_ids import SemanticIds
from serving.bundle import load_bundle_data
from serving.generative import GenerativeRanker, search_one


@pytest.mark.parametrize("seed", range(4))
def test_server_search_equals_the_models_batched_search(seed):
    rng = np.random.default_rng(seed)
    ids = SemanticIds.from_codes(rng.integers(0, 4, size=(60, 3)), [4, 4, 4])
    logits = {}

    def step_recsys(rows, prefix):
        return np.stack([logits.setdefault(tuple(p), rng.normal(size=ids.level_sizes[len(p)]) * 3) for p in prefix])

    excluded = rng.random(60) < 0.3
    trie = PrefixTrie(ids.codes, ids.level_sizes)
    items, scores = beam_search(step_recsys, 1, trie, 15, 10, [np.flatnonzero(excluded)])
    served, served_scores = search_one(lambda prefix: step_recsys(None, prefix), trie, 15, 10, excluded)
    np.testing.assert_array_equal(served, items[0][items[0] >= 0])
    np.testing.assert_allclose(served_scores, scores[0][: len(served)])


def save_checkpoint(model: GenerativeRetriever, path) -> None:
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": pl.__version__}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def tiger_bundle(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("generative")
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 40
    ids = SemanticIds.from_codes(rng.integers(0, 4, size=(n_items, 3)), [4, 4, 4])
    torch.manual_seed(0)
    model = GenerativeRetriever(variant="tiger", n_items=n_items, level_sizes=ids.level_sizes, d_model=16, n_heads=2,
                                encoder_layers=1, decoder_layers=1, ff_dim=32, max_history=4, beam_size=12)
    model.set_items(ids.codes)
    history = [rng.choice(n_items, size=rng.integers(0, 7), replace=False) for _ in range(n_users)]
    indptr = np.concatenate([[0], np.cumsum([len(h) for h in history])]).tolist()
    flat = np.concatenate(history).astype(int).tolist()
    model.prefengine_meta = {
        "vocab_users": [f"u{u}" for u in range(n_users)], "vocab_items": [f"i{i}" for i in range(n_items)],
        "catalog": {"title": [f"Item {i}" for i in range(n_items)], "category": ["a", "b"] * (n_items // 2)},
        "item_popularity": rng.integers(0, 9, n_items).tolist(),
        "train_items_by_user": {"indptr": indptr, "indices": flat},
        "recent_items_by_user": {"indptr": indptr, "indices": flat}}
    save_checkpoint(model, root / "tiger.ckpt")
    bundle = export_generative(root / "tiger.ckpt", root / "bundle", verify_sample=8)
    return bundle, model.eval(), history


def test_exported_bundle_answers_in_the_server_like_the_torch_model(tiger_bundle):
    bundle, model, history = tiger_bundle
    ranker = GenerativeRanker(load_bundle_data(bundle))
    runtime = OnnxGenerativeRetriever(bundle)
    for user in range(0, 30, 3):
        known = ranker.user_history(user)
        np.testing.assert_array_equal(known, history[user])
        excluded = np.zeros(40, dtype=bool)
        excluded[known] = True
        excluded[::5] = True  # a filter on top of the seen items
        served, served_scores = ranker.rank(known, [], k=10, excluded=excluded)
        padded = np.full((1, 4), -1)
        recent = known[-4:]
        if len(recent):
            padded[0, 4 - len(recent):] = recent
        expected, expected_scores = model.recommend(padded, k=10, beam_size=12, exclude=[np.flatnonzero(excluded)])
        np.testing.assert_array_equal(served, expected[0][expected[0] >= 0])
        np.testing.assert_allclose(served_scores, expected_scores[0][: len(served)], atol=1e-4)
        assert not excluded[served].any() and len(set(served.tolist())) == len(served)
        onnx_items, _ = runtime.recommend(padded, k=10, beam_size=12, exclude=[np.flatnonzero(excluded)])
        np.testing.assert_array_equal(onnx_items, expected)


def test_a_bundle_with_a_broken_semantic_id_file_is_refused(tiger_bundle, tmp_path):
    import shutil

    from bundleformat.manifest import BundleError

    bundle, _, _ = tiger_bundle
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    np.save(copy / "semantic_ids.npy", np.zeros((40, 4), dtype=np.int64), allow_pickle=False)
    with pytest.raises(BundleError, match="same semantic ID"):
        GenerativeRanker(load_bundle_data(copy, verify=False))


def test_tiger_bundles_answer_by_beam_search_and_ignore_preferences_with_a_warning(tiger_bundle, tmp_path):
    from serving_helpers import in_process_client, post_recommend

    bundle, model, history = tiger_bundle
    with in_process_client(bundle, tmp_path / "events.sqlite") as client:
        plain = post_recommend(client, user_id="u4", k=6)
        stated = post_recommend(client, user_id="u4", k=6, preferences=["Looking for something lighter"])
        (info,) = client.get("/v1/models").json()["models"]
    assert plain["scorer"] == stated["scorer"] == "generative" and plain["warnings"] == []
    assert any("preferences ignored" in w and "tiger" in w for w in stated["warnings"])
    assert stated["items"] == plain["items"]
    padded = np.full((1, 4), -1)
    recent = history[4][-4:]
    padded[0, 4 - len(recent):] = recent
    expected, _ = model.recommend(padded, k=6, beam_size=12, exclude=[history[4]])
    assert [item["item_id"] for item in plain["items"]] == [f"i{i}" for i in expected[0] if i >= 0]
    assert info["query_kinds"] == ["user_id", "recent_items"] and info["generative"]["variant"] == "tiger"
