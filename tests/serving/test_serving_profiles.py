"""Cold-start users by profile: a personality bundle from a tiny trained ranker, served by the API.

The reference is the torch (TorchRec) model itself: `FeatureSpace.encode_profile` turns the raw
profile into features and `score_profiles` scores them; the API must rank every item the same way,
with the same scores, through ranker.onnx and its own numpy encoding of the profile.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from serving_helpers import in_process_client, post_recommend

from recsys.data.interactions import BIG_FIVE
from recsys.models.personality import PersonalityRecommender

TOKEN = "profile-token-0123456789-abcdefghijklmnop"


@pytest.fixture
def client(personality, tmp_path):
    with in_process_client(personality.path, tmp_path / "events.sqlite", token=TOKEN) as test_client:
        yield test_client


def reference_scores(model: PersonalityRecommender, traits: dict, demographics: dict, tastes: list) -> np.ndarray:
    features = model.features.encode_profile(traits, demographics, tastes)
    return model.score_profiles(*(torch.from_numpy(features[k]) for k in ("demographics", "tastes", "traits")))[0].numpy()


def random_profiles(model: PersonalityRecommender, n: int, seed: int):
    """Profiles with some traits missing, real and never-seen demographic values, real and unseen tastes."""
    rng = np.random.default_rng(seed)
    space = model.features
    for _ in range(n):
        traits = {t: float(space.trait_mean[j] + space.trait_std[j] * rng.normal())
                  for j, t in enumerate(BIG_FIVE) if rng.random() < 0.8}
        demographics = {f.name: (str(rng.choice(f.values)) if rng.random() < 0.8 else "never-seen")
                        for f in space.fields if rng.random() < 0.8}
        tastes = [str(t) for t in rng.choice(space.tastes, size=rng.integers(0, 4), replace=False)]
        yield traits, demographics, tastes + (["unseen-taste"] if rng.random() < 0.3 else [])


def test_the_bundle_carries_the_ranker_graph(personality):
    """write_bundle(extra_files=, manifest_sections=): the ranker joins the files (with sha256), the graphs and
    the verification record beside the towers'."""
    manifest = json.loads((personality.path / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "personality"
    for name in ("ranker.onnx", "profile_features.json"):
        digest = hashlib.sha256((personality.path / name).read_bytes()).hexdigest()
        assert manifest["files"][name]["sha256"] == digest
    assert set(manifest["graphs"]) == {"user_tower", "sequence_tower", "ranker"}
    assert manifest["graphs"]["ranker"]["file"] == "ranker.onnx"
    assert set(manifest["verification"]) >= {"onnx_max_abs_error", "ranker_max_abs_error"}
    assert max(manifest["verification"]["ranker_max_abs_error"].values()) <= 1e-5


def test_profile_scores_and_ranking_equal_the_torch_cold_start_path(client, personality):
    model, datamodule = personality.model, personality.datamodule
    n_items = datamodule.n_items
    for traits, demographics, tastes in random_profiles(model, 8, seed=0):
        answer = post_recommend(client, profile={"traits": traits, "demographics": demographics, "tastes": tastes},
                                k=n_items, exclude_seen=False)
        assert answer["fallback"] == "profile" and answer["scorer"] == "ranker" and answer["user_known"] is False
        expected = reference_scores(model, traits, demographics, tastes)
        order = np.argsort(-expected.astype(np.float64), kind="stable")
        items = datamodule.split.train.vocab.items
        assert [item["item_id"] for item in answer["items"]] == [items[i] for i in order]
        np.testing.assert_allclose([item["score"] for item in answer["items"]], expected[order], rtol=0, atol=1e-5)
        if "unseen-taste" in tastes:
            assert any("unseen-taste" in w for w in answer["warnings"])


def test_profile_queries_apply_filters_and_exclusions_like_the_embedding_path(client, personality):
    model, datamodule = personality.model, personality.datamodule
    vocab, categories = datamodule.split.train.vocab, model.features.categories
    item_category = model.features.item_category  # 1-based into categories
    traits = {"openness": 4.5, "neuroticism": 1.5}
    expected = reference_scores(model, traits, {}, [])
    wanted = categories[:2]
    recent = [str(vocab.items[i]) for i in np.argsort(-expected)[:3]]  # the three best: exclude_seen drops them
    dropped = str(vocab.items[np.argsort(-expected)[5]])
    answer = post_recommend(client, profile={"traits": traits}, recent_items=recent, k=7,
                            filters={"include_categories": wanted, "exclude_items": [dropped]})
    assert answer["fallback"] == "profile"  # a profile outranks recent items ...
    allowed = np.isin(item_category, [categories.index(c) + 1 for c in wanted])
    allowed[[list(vocab.items).index(i) for i in [*recent, dropped]]] = False  # ... which are still excluded as seen
    order = [i for i in np.argsort(-expected.astype(np.float64), kind="stable") if allowed[i]][:7]
    assert [item["item_id"] for item in answer["items"]] == [str(vocab.items[i]) for i in order]
    assert {item["category"] for item in answer["items"]} <= set(wanted)


def test_names_the_model_does_not_know_are_a_422_naming_them(client):
    response = client.post("/v1/recommend", json={"profile": {"traits": {"honesty": 3.0}}})
    assert response.status_code == 422 and "honesty" in response.text
    response = client.post("/v1/recommend", json={"profile": {"demographics": {"shoe_size": 44}}})
    assert response.status_code == 422 and "shoe_size" in response.text and "age_group" in response.text
    response = client.post("/v1/recommend", json={"profile": {"traits": {"openness": float("1e9")}}})
    assert response.status_code == 422


def test_known_users_keep_their_own_scores_and_models_lists_the_profile_fields(client, personality):
    model, datamodule = personality.model, personality.datamodule
    vocab = datamodule.split.train.vocab
    warm = int(np.flatnonzero(model.warm_users.numpy())[0])
    answer = post_recommend(client, user_id=str(vocab.users[warm]), profile={"traits": {"openness": 1.0}}, k=5,
                            exclude_seen=False)
    assert answer["fallback"] is None and answer["scorer"] == "embedding"
    assert any("profile ignored" in w for w in answer["warnings"])
    expected = model.score_users(torch.tensor([warm]))[0].numpy()
    assert [item["item_id"] for item in answer["items"]] == \
        [str(vocab.items[i]) for i in np.argsort(-expected.astype(np.float64), kind="stable")[:5]]
    (info,) = client.get("/v1/models").json()["models"]
    assert info["query_kinds"] == ["user_id", "recent_items", "profile"] and info["generative"] is None
    assert info["profile"]["traits"] == list(BIG_FIVE)
    assert info["profile"]["demographics"]["gender"]["values"] == model.features.fields[1].values
    assert info["profile"]["tastes"] == model.features.tastes


def test_embedding_bundles_ignore_profiles_and_preferences_with_warnings(bundle_dir, tmp_path):
    with in_process_client(bundle_dir, tmp_path / "events.sqlite") as client:
        answer = post_recommend(client, profile={"traits": {"openness": 3.0}}, preferences=["quiet headphones"], k=3)
        assert answer["fallback"] == "popularity" and answer["scorer"] == "popularity"
        assert any("profile ignored" in w for w in answer["warnings"])
        assert any("preferences ignored" in w for w in answer["warnings"])
        (info,) = client.get("/v1/models").json()["models"]
        assert info["query_kinds"] == ["user_id", "recent_items"]


def test_reload_swaps_between_an_embedding_and_a_personality_bundle(bundle_dir, personality, tmp_path):
    root = os.path.commonpath([bundle_dir, personality.path])  # reloads load bundles from inside one root
    with in_process_client(bundle_dir, tmp_path / "events.sqlite", token=TOKEN, bundle_root=root) as client:
        body = {"profile": {"traits": {"openness": 4.0}}, "k": 3}
        assert post_recommend(client, **body)["scorer"] == "popularity"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = client.post("/v1/admin/reload", json={"bundle": str(personality.path)}, headers=headers)
        assert response.status_code == 200, response.text
        assert post_recommend(client, **body)["scorer"] == "ranker"
        response = client.post("/v1/admin/reload", json={"bundle": str(bundle_dir)}, headers=headers)
        assert response.status_code == 200 and post_recommend(client, **body)["scorer"] == "popularity"
