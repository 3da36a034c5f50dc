"""Stated preferences in the API: a Mender bundle from a tiny trained model (`model_bundles`) answers
exactly as the torch model's beam search and the exporter's ONNX path do."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_bundles import BEAM, KINDS, MAX_HISTORY, N_ITEMS, N_USERS
from serving_helpers import in_process_client, post_recommend

from recsys.export.generative import OnnxGenerativeRetriever

PREFERENCES = ["Looking for dark roast coffee", "Avoid green tea"]


@pytest.fixture
def client(mender, tmp_path):
    with in_process_client(mender.path, tmp_path / "events.sqlite") as test_client:
        yield test_client


def torch_top_k(model, encoder, history, preferences, k, excluded):
    """The torch model's beam search for one query, with the server's beam width."""
    padded = np.full((1, MAX_HISTORY), -1, dtype=np.int64)
    recent = np.asarray(history[-MAX_HISTORY:], dtype=np.int64)
    if len(recent):
        padded[0, MAX_HISTORY - len(recent):] = recent
    prefs = mask = None
    if preferences:
        prefs, mask = encoder.encode(preferences)[None], np.ones((1, len(preferences)), dtype=bool)
    items, scores = model.recommend(padded, prefs, mask, k=k, beam_size=max(BEAM, k), exclude=[excluded])
    keep = items[0] >= 0
    return items[0][keep], scores[0][keep], padded, prefs, mask


def test_the_bundle_carries_the_text_encoder_and_generative_graphs(mender):
    manifest = json.loads((mender.path / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "generative-mender" and manifest["generative"]["variant"] == "mender"
    assert {"generative_encoder.onnx", "generative_decoder_step.onnx", "text_encoder.onnx",
            "text_tokenizer.json", "semantic_ids.npy"} <= set(manifest["files"])
    assert manifest["generative"]["verification"]["identical_lists"] == 1.0


def test_known_users_with_preferences_get_the_torch_models_beam_search(client, mender):
    model, encoder, train = mender.model, mender.encoder, mender.train
    runtime = OnnxGenerativeRetriever(mender.path)
    changed = 0
    for user in range(0, N_USERS, 5):
        answer = post_recommend(client, user_id=f"u{user}", preferences=PREFERENCES, k=8)
        assert answer["user_known"] is True and answer["fallback"] is None and answer["scorer"] == "generative"
        assert answer["warnings"] == []
        items, scores, padded, prefs, mask = torch_top_k(model, encoder, train[user], PREFERENCES, 8, train[user])
        assert [item["item_id"] for item in answer["items"]] == [f"i{i}" for i in items]
        np.testing.assert_allclose([item["score"] for item in answer["items"]], scores, rtol=0, atol=1e-4)
        onnx_items, _ = runtime.recommend(padded, runtime.encode_text(PREFERENCES)[None], mask, k=8,
                                          beam_size=BEAM, exclude=[train[user]])
        np.testing.assert_array_equal(onnx_items[0], items)
        assert not set(items) & set(train[user].tolist())  # exclude_seen
        plain = post_recommend(client, user_id=f"u{user}", k=8)
        expected, _, *_ = torch_top_k(model, encoder, train[user], [], 8, train[user])
        assert [item["item_id"] for item in plain["items"]] == [f"i{i}" for i in expected]
        changed += [item["item_id"] for item in plain["items"]] != [item["item_id"] for item in answer["items"]]
    assert changed >= 4  # of 8 users: the stated preferences change the answer


def test_unknown_users_generate_from_recent_items_or_from_preferences_alone(client, mender):
    model, encoder = mender.model, mender.encoder
    recent = [3, 8, 13]
    answer = post_recommend(client, recent_items=[f"i{i}" for i in recent], preferences=PREFERENCES[:1], k=5,
                            filters={"exclude_categories": ["tea"]})
    assert answer["fallback"] == "recent_items" and answer["scorer"] == "generative"
    excluded = sorted(set(recent) | {i for i in range(N_ITEMS) if KINDS[i % len(KINDS)] == "green tea"})
    items, *_ = torch_top_k(model, encoder, recent, PREFERENCES[:1], 5, excluded)
    assert [item["item_id"] for item in answer["items"]] == [f"i{i}" for i in items]
    alone = post_recommend(client, preferences=PREFERENCES, k=5)
    assert alone["fallback"] == "preferences" and alone["user_known"] is False
    items, *_ = torch_top_k(model, encoder, [], PREFERENCES, 5, [])
    assert [item["item_id"] for item in alone["items"]] == [f"i{i}" for i in items]
    (info,) = client.get("/v1/models").json()["models"]
    assert info["query_kinds"] == ["user_id", "recent_items", "preferences"]
    assert info["generative"] == {"variant": "mender", "beam_size": BEAM, "max_history": MAX_HISTORY,
                                  "max_preferences": 5}


def test_preference_sentences_are_bounded(client):
    for body in ({"user_id": "u1", "preferences": ["x"] * 6}, {"user_id": "u1", "preferences": [""]},
                 {"user_id": "u1", "preferences": ["x" * 501]}):
        assert client.post("/v1/recommend", json=body).status_code == 422
