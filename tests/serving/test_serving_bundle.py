import json

import numpy as np
import pytest
from serving_helpers import N_ITEMS, N_USERS, copy_bundle, rewrite_file

from bundleformat.manifest import BundleError
from serving.bundle import load_bundle_data
from serving.retrieval import Retriever


def test_an_exported_bundle_loads_with_its_tables(bundle_dir, world):
    data = load_bundle_data(bundle_dir)
    assert (data.n_items, len(data.user_ids), data.dim) == (N_ITEMS, N_USERS, 16)
    assert data.item_ids == world.item_ids and data.user_ids == world.user_ids
    np.testing.assert_array_equal(data.item_vectors, world.items)
    np.testing.assert_array_equal(data.item_popularity, world.popularity)
    np.testing.assert_array_equal(data.seen_indptr, world.seen_indptr)
    np.testing.assert_array_equal(data.seen_indices, world.seen_indices)
    assert data.manifest["metrics"] == {"test/recall@10": 0.25}


def _expect(bundle, fragment):
    with pytest.raises(BundleError) as caught:
        Retriever.load(bundle)
    assert fragment in str(caught.value)
    assert str(bundle) in str(caught.value)


def test_a_changed_byte_fails_the_checksum(bundle_dir, tmp_path):
    bad = copy_bundle(bundle_dir, tmp_path / "b")
    raw = bytearray((bad / "item_vectors.npy").read_bytes())
    raw[-1] ^= 0xFF
    (bad / "item_vectors.npy").write_bytes(bytes(raw))
    _expect(bad, "item_vectors.npy: sha256")


def test_missing_unlisted_and_truncated_files_are_named(bundle_dir, tmp_path):
    missing = copy_bundle(bundle_dir, tmp_path / "missing")
    (missing / "users.json").unlink()
    _expect(missing, "users.json is listed in manifest.json but missing")
    extra = copy_bundle(bundle_dir, tmp_path / "extra")
    (extra / "notes.txt").write_text("hi")
    _expect(extra, "files not listed in manifest.json: ['notes.txt']")
    truncated = copy_bundle(bundle_dir, tmp_path / "truncated")
    (truncated / "item_index.faiss").write_bytes((truncated / "item_index.faiss").read_bytes()[:100])
    _expect(truncated, "item_index.faiss has 100 bytes")


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
    (lambda m: m.update(format="something-else"), "'format' is 'something-else'"),
    (lambda m: m.pop("embedding_dim"), "missing field 'embedding_dim'"),
    (lambda m: m.update(n_items="600"), "field 'n_items' must be int"),
    (lambda m: m.update(n_items=N_ITEMS + 1), "'item_id' has 600 entries, manifest says 601"),
])
def test_manifest_problems_are_named(bundle_dir, tmp_path, edit, fragment):
    bad = copy_bundle(bundle_dir, tmp_path / "bad")
    manifest = json.loads((bad / "manifest.json").read_text())
    edit(manifest)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    _expect(bad, fragment)


def test_manifest_that_is_not_json_or_absent(bundle_dir, tmp_path):
    bad = copy_bundle(bundle_dir, tmp_path / "bad")
    (bad / "manifest.json").write_text("{not json")
    _expect(bad, "manifest.json is not valid JSON")
    (bad / "manifest.json").unlink()
    _expect(bad, "has no manifest.json")
    _expect(tmp_path / "nowhere", "is not a directory")


def test_a_pickled_array_is_refused_even_with_a_matching_checksum(bundle_dir, tmp_path):
    import io

    bad = copy_bundle(bundle_dir, tmp_path / "bad")
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()] * N_ITEMS, dtype=object), allow_pickle=True)
    rewrite_file(bad, "item_popularity.npy", buffer.getvalue())
    _expect(bad, "item_popularity.npy is not a plain .npy array")


def test_towers_that_disagree_with_the_item_vectors_are_refused(bundle_dir, tmp_path):
    bad = copy_bundle(bundle_dir, tmp_path / "bad")
    shifted = np.load(bad / "item_vectors.npy") + 1.0
    import io

    buffer = io.BytesIO()
    np.save(buffer, shifted, allow_pickle=False)
    rewrite_file(bad, "item_vectors.npy", buffer.getvalue())
    _expect(bad, "sequence_tower.onnx does not reproduce item_vectors.npy")


def test_an_index_of_the_wrong_size_is_refused(bundle_dir, tmp_path, world):
    import faiss

    bad = copy_bundle(bundle_dir, tmp_path / "bad")
    index = faiss.IndexFlatIP(world.items.shape[1])
    index.add(world.items[:-1])
    faiss.write_index(index, str(tmp_path / "small.faiss"))
    rewrite_file(bad, "item_index.faiss", (tmp_path / "small.faiss").read_bytes())
    _expect(bad, f"item_index.faiss holds {N_ITEMS - 1} vectors")
