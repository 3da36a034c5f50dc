"""The API through FastAPI's TestClient (in-process): rankings, fallbacks, filters, errors, metrics, reload."""

import json
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from serving_helpers import CATEGORIES, N_ITEMS, N_USERS, copy_bundle

from recsys.evaluation.pairs import UserItemSet
from recsys.evaluation.ranking import Candidates, rank_users
from serving.app import create_app
from serving.retrieval import Retriever
from serving.settings import Settings

TOKEN = "test-token-0123456789-abcdefghijklmnop"


@pytest.fixture(scope="module")
def retriever(bundle_dir):
    return Retriever.load(bundle_dir)


@pytest.fixture
def client(bundle_dir, retriever, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFENGINE_ADMIN_TOKEN", TOKEN)
    settings = Settings(bundle=str(bundle_dir), feedback_db=str(tmp_path / "events.sqlite"), max_body_bytes=4096,
                        bundle_root=str(tmp_path))
    with TestClient(create_app(settings, retriever)) as test_client:
        yield test_client


def recommend(client, **body):
    response = client.post("/v1/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def exact_ranking(world, query: np.ndarray, allowed: np.ndarray, k: int) -> list[str]:
    scores = np.where(allowed, world.items.astype(np.float64) @ query.astype(np.float64), -np.inf)
    order = np.argsort(-scores, kind="stable")
    return [world.item_ids[i] for i in order[:min(k, int(allowed.sum()))]]


def test_api_ranking_equals_the_offline_evaluator_for_every_user(client, world):
    k = 20
    users = np.arange(N_USERS)
    hidden = UserItemSet(world.seen_indptr, world.seen_indices, N_ITEMS)
    vectors = torch.from_numpy(world.items)
    (expected,) = rank_users(lambda u: torch.from_numpy(world.users[u]) @ vectors.T, users, k,
                             [Candidates(hidden=hidden)], N_ITEMS, batch_size=64)
    for user in users:
        answer = recommend(client, user_id=world.user_ids[user], k=k)
        assert answer["user_known"] is True and answer["fallback"] is None
        assert [item["item_id"] for item in answer["items"]] == [world.item_ids[i] for i in expected[user]]
        scores = [item["score"] for item in answer["items"]]
        np.testing.assert_allclose(scores, world.items[expected[user]] @ world.users[user], rtol=1e-5, atol=1e-5)


def test_exclude_seen_false_ranks_training_items_too(client, world):
    user = int(np.argmax(np.diff(world.seen_indptr)))
    answer = recommend(client, user_id=world.user_ids[user], k=30, exclude_seen=False)
    assert [i["item_id"] for i in answer["items"]] == exact_ranking(world, world.users[user], np.ones(N_ITEMS, bool), 30)


def test_filters_restrict_exactly(client, world):
    user = 3
    allowed = np.isin(world.categories, ["books", "music"])
    allowed[world.seen(user)] = False
    excluded = exact_ranking(world, world.users[user], allowed, 2)
    allowed[[world.item_ids.index(i) for i in excluded]] = False
    answer = recommend(client, user_id=world.user_ids[user], k=15,
                       filters={"include_categories": ["books", "music"], "exclude_items": excluded})
    assert [i["item_id"] for i in answer["items"]] == exact_ranking(world, world.users[user], allowed, 15)
    assert {i["category"] for i in answer["items"]} <= {"books", "music"}

    allowed = ~np.isin(world.categories, ["games"])
    allowed[world.seen(user)] = False
    answer = recommend(client, user_id=world.user_ids[user], k=15, filters={"exclude_categories": ["games"]})
    assert [i["item_id"] for i in answer["items"]] == exact_ranking(world, world.users[user], allowed, 15)


def test_k_larger_than_the_allowed_items_returns_all_of_them(client, world):
    answer = recommend(client, user_id="user-1", k=1000, exclude_seen=False, filters={"include_categories": ["tools"]})
    assert len(answer["items"]) == N_ITEMS // len(CATEGORIES)


def test_unknown_user_with_recent_items_ranks_by_their_mean_vector(client, world):
    recent = ["item-5", "item-17", "item-240", "no-such-item"]
    answer = recommend(client, user_id="stranger", recent_items=recent, k=10)
    assert answer["user_known"] is False and answer["fallback"] == "recent_items"
    assert any("no-such-item" in w for w in answer["warnings"]) and any("stranger" in w for w in answer["warnings"])
    query = world.items[[5, 17, 240]].mean(axis=0)
    allowed = np.ones(N_ITEMS, bool)
    allowed[[5, 17, 240]] = False  # exclude_seen leaves out what the caller just saw
    assert [i["item_id"] for i in answer["items"]] == exact_ranking(world, query, allowed, 10)


def test_unknown_user_without_items_gets_the_most_popular(client, world):
    answer = recommend(client, user_id="stranger", k=5, filters={"include_categories": ["games"]})
    assert answer["fallback"] == "popularity"
    games = [i for i in np.argsort(-world.popularity, kind="stable") if world.categories[i] == "games"][:5]
    assert [i["item_id"] for i in answer["items"]] == [world.item_ids[i] for i in games]
    assert [i["score"] for i in answer["items"]] == [float(world.popularity[i]) for i in games]


def test_answer_carries_titles_categories_and_version(client, bundle_dir):
    answer = recommend(client, user_id="user-0", k=3)
    version = json.loads((bundle_dir / "manifest.json").read_text())["bundle_version"]
    assert answer["bundle_version"] == version and answer["model"] == "test-model"
    for item in answer["items"]:
        index = int(item["item_id"].split("-")[1])
        assert item["title"] == f"Title {index}" and item["category"] == CATEGORIES[index % len(CATEGORIES)]


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"user_id": "user-1", "k": 0}, 422, "greater than or equal to 1"),
    ({"user_id": "user-1", "k": 1001}, 422, "less than or equal to 1000"),
    ({"user_id": "user-1", "k": "ten"}, 422, "valid integer"),
    ({"k": 5}, 422, "give user_id, recent_items, profile, preferences or comparisons"),
    ({"user_id": "user-1", "filters": {"include_categories": ["cars"]}}, 422, "unknown categories ['cars']"),
    ({"user_id": "user-1", "filters": {"exclude_categories": ["books", "boats"]}}, 422, "unknown categories ['boats']"),
    ({"user_id": "user-1", "surprise": True}, 422, "Extra inputs are not permitted"),
    ({"user_id": ""}, 422, "at least 1 character"),
])
def test_bad_requests_get_a_clear_422(client, body, status, fragment):
    response = client.post("/v1/recommend", json=body)
    assert response.status_code == status
    assert fragment in response.text


def test_oversized_and_malformed_bodies_are_4xx(client):
    big = {"user_id": "user-1", "recent_items": ["x" * 200] * 30}
    response = client.post("/v1/recommend", json=big)
    assert response.status_code == 413 and "exceeds the limit of 4096 bytes" in response.json()["detail"]
    response = client.post("/v1/recommend", content=b"{\"user_id\": ", headers={"content-type": "application/json"})
    assert response.status_code == 422
    response = client.post("/v1/recommend", content=b"[" * 3000, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    response = client.post("/v1/recommend", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def test_health_readiness_models_and_metrics(client, bundle_dir):
    assert client.get("/healthz").json() == {"status": "ok"}
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert client.get("/readyz").json() == {"status": "ready", "bundle_version": manifest["bundle_version"]}
    (model,) = client.get("/v1/models").json()["models"]
    assert model["n_items"] == N_ITEMS and model["n_users"] == N_USERS and model["embedding_dim"] == 16
    assert model["index"] == {"kind": "flat", "params": {}} and model["metrics"] == {"test/recall@10": 0.25}
    for _ in range(3):
        recommend(client, user_id="user-2", k=4)
    client.post("/v1/recommend", json={"user_id": "user-2", "k": 0})
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'serving_requests_total{endpoint="/v1/recommend",method="POST",status="200"} 3.0' in text
    assert 'serving_requests_total{endpoint="/v1/recommend",method="POST",status="422"} 1.0' in text
    assert 'serving_requests_total{endpoint="unmatched",method="GET",status="404"} 1.0' in text
    assert 'serving_request_duration_seconds_count{endpoint="/v1/recommend",method="POST",status="200"} 3.0' in text
    assert f'serving_bundle_info{{bundle_version="{manifest["bundle_version"]}"' in text
    assert f"serving_bundle_items {float(N_ITEMS)}" in text


def test_feedback_is_committed_before_the_answer(client, tmp_path):
    import sqlite3

    events = [{"user_id": "user-1", "item_id": "item-3", "kind": "click", "timestamp": 1700000000},
              {"user_id": "new-user", "item_id": "item-4", "kind": "rating", "value": 4.5}]
    response = client.post("/v1/feedback", json={"events": events})
    assert response.status_code == 200 and response.json() == {"accepted": 2, "event_ids": [1, 2]}
    rows = sqlite3.connect(tmp_path / "events.sqlite").execute(
        "SELECT user_id, item_id, kind, value, timestamp FROM events ORDER BY id").fetchall()
    assert rows[0] == ("user-1", "item-3", "click", None, 1700000000)
    assert rows[1][:4] == ("new-user", "item-4", "rating", 4.5) and rows[1][4] > 1700000000
    assert 'serving_feedback_events_total{kind="click"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(("event", "fragment"), [
    ({"user_id": "u", "item_id": "i", "kind": "like"}, "'click', 'purchase', 'rating' or 'skip'"),
    ({"user_id": "u", "item_id": "i", "kind": "rating"}, "needs a value"),
    ({"user_id": "u", "item_id": "i", "kind": "click", "timestamp": -5}, "greater than or equal to 0"),
    ({"user_id": "u", "item_id": "", "kind": "click"}, "at least 1 character"),
])
def test_bad_feedback_is_422(client, event, fragment):
    response = client.post("/v1/feedback", json={"events": [event]})
    assert response.status_code == 422 and fragment in response.text
    assert client.post("/v1/feedback", json={"events": []}).status_code == 422


def test_reload_needs_the_token_and_rejects_a_bad_bundle(client, bundle_dir, tmp_path):
    assert client.post("/v1/admin/reload", json={}).status_code == 401
    wrong = client.post("/v1/admin/reload", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    before = recommend(client, user_id="user-7", k=5)

    broken = copy_bundle(bundle_dir, tmp_path / "broken", version="broken-1")
    (broken / "items.json").write_text("{}")
    response = client.post("/v1/admin/reload", json={"bundle": str(broken)}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422 and "items.json has 2 bytes" in response.json()["detail"]
    assert recommend(client, user_id="user-7", k=5) == before

    fresh = copy_bundle(bundle_dir, tmp_path / "fresh", version="fresh-2")
    response = client.post("/v1/admin/reload", json={"bundle": str(fresh)}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.json()["previous_version"] == before["bundle_version"]
    assert response.json()["bundle_version"] == "fresh-2"
    after = recommend(client, user_id="user-7", k=5)
    assert after["bundle_version"] == "fresh-2" and after["items"] == before["items"]
    text = client.get("/metrics").text
    assert 'serving_reloads_total{outcome="rejected"} 1.0' in text and 'serving_reloads_total{outcome="accepted"} 1.0' in text
    assert 'serving_bundle_info{bundle_version="fresh-2",model_kind="implicit-bpr",model_name="test-model"} 1.0' in text


def test_reload_is_refused_when_no_token_is_configured(bundle_dir, retriever, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFENGINE_ADMIN_TOKEN", raising=False)
    settings = Settings(bundle=str(bundle_dir), feedback_db=str(tmp_path / "events.sqlite"))
    with TestClient(create_app(settings, retriever)) as test_client:
        response = test_client.post("/v1/admin/reload", json={}, headers={"Authorization": "Bearer "})
        assert response.status_code == 403 and "PREFENGINE_ADMIN_TOKEN" in response.json()["detail"]


def test_not_ready_until_the_bundle_loads(tmp_path):
    settings = Settings(bundle=str(tmp_path / "missing"), feedback_db=str(tmp_path / "events.sqlite"))
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/healthz").status_code == 200
        for _ in range(100):  # the load runs in the background; wait for its verdict
            response = test_client.get("/readyz")
            if "is not a directory" in response.text:
                break
            time.sleep(0.02)
        assert response.status_code == 503 and "is not a directory" in response.json()["detail"]
        assert test_client.post("/v1/recommend", json={"user_id": "u"}).status_code == 503
