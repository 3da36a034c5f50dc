"""Checkpoint -> bundle: ONNX parity, faiss parity, checksums, no pickle, and failures that write nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import pytorch_lightning as pl
import torch

from recsys import cli
from recsys.data.datamodule import InteractionDataModule
from recsys.errors import UserInputError
from recsys.export import cli as export_cli
from recsys.export import embeddings as export_module
from recsys.export.embeddings import (
    ExportVerificationError,
    IndexSpec,
    SequenceTower,
    UserTower,
    build_index,
    write_bundle,
)
from recsys.models.implicit import ImplicitRecommender

EXPECTED_FILES = {"manifest.json", "user_tower.onnx", "sequence_tower.onnx", "item_index.faiss", "item_vectors.npy",
                  "item_popularity.npy", "seen_indptr.npy", "seen_indices.npy", "users.json", "items.json"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A briefly trained NBPO model on the toy preference world, saved by Lightning."""
    path = tmp_path_factory.mktemp("ckpt") / "nbpo.ckpt"
    data = InteractionDataModule(world_preset="toy", batch_size=1024, seed=3)
    model = ImplicitRecommender(n_users=data.n_users, n_items=data.n_items, objective="nbpo", embedding_dim=8, lr=0.05)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return ImplicitRecommender.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False).eval()


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "nbpo"
    assert cli.main(["export", "--ckpt", str(checkpoint), "--out", str(out), "--name", "nbpo-toy"]) == 0
    return out


def test_the_bundle_describes_the_checkpoint(bundle, checkpoint, model):
    manifest = json.loads((bundle / "manifest.json").read_text())
    block = torch.load(checkpoint, map_location="cpu", weights_only=False)["prefengine"]
    assert manifest["format"] == "prefengine-bundle" and manifest["format_version"] == 1
    assert manifest["model"]["kind"] == "implicit-nbpo" and manifest["model"]["name"] == "nbpo-toy"
    assert manifest["bundle_version"].startswith("nbpo-toy-")
    assert (manifest["n_users"], manifest["n_items"], manifest["embedding_dim"]) == (model.hparams.n_users,
                                                                                       model.hparams.n_items, 8)
    assert manifest["vocab_digest"] == block["vocab_digest"]
    assert manifest["metrics"] == pytest.approx(block["metrics"]) and "valid/ndcg@20" in manifest["metrics"]
    assert manifest["model"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    items = json.loads((bundle / "items.json").read_text())
    assert items["item_id"] == block["vocab_items"] and items["title"] == block["catalog"]["title"]
    assert np.load(bundle / "item_popularity.npy").tolist() == block["item_popularity"]


def test_onnx_towers_equal_the_torchrec_tables(bundle, model):
    users = model.user_embeddings().numpy()
    items = model.item_embeddings().numpy()
    user_tower = ort.InferenceSession(str(bundle / "user_tower.onnx"), providers=["CPUExecutionProvider"])
    every_user = np.arange(len(users), dtype=np.int64)
    np.testing.assert_allclose(user_tower.run(None, {"user_index": every_user})[0], users, atol=1e-5, rtol=0)
    rng = np.random.default_rng(0)
    sequences = rng.integers(0, len(items), size=(50, 12)).astype(np.int64)
    lengths = rng.integers(1, 13, size=50)
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.float32)
    sequence_tower = ort.InferenceSession(str(bundle / "sequence_tower.onnx"), providers=["CPUExecutionProvider"])
    got = sequence_tower.run(None, {"item_index": sequences, "mask": mask})[0]
    expected = np.stack([items[row[:n]].mean(axis=0) for row, n in zip(sequences, lengths)])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_flat_index_returns_the_exact_top_k_of_the_model(bundle, model):
    import faiss

    index = faiss.read_index(str(bundle / "item_index.faiss"))
    users = torch.arange(model.hparams.n_users)
    scores = model.score_users(users).double()
    expected = torch.topk(scores, 10, dim=1).indices.numpy()
    _, found = index.search(model.user_embeddings().numpy(), 10)
    agree = (found == expected).all(axis=1)
    assert agree.mean() > 0.99
    for row in np.flatnonzero(~agree):  # only near-ties may swap places
        np.testing.assert_allclose(np.sort(scores[row, found[row]].numpy()), np.sort(scores[row, expected[row]].numpy()),
                                   atol=1e-5)


def test_manifest_checksums_cover_every_file(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {p.name for p in bundle.iterdir()} == EXPECTED_FILES
    assert set(manifest["files"]) == EXPECTED_FILES - {"manifest.json"}
    for name, entry in manifest["files"].items():
        payload = (bundle / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}


def test_nothing_in_the_bundle_is_a_pickle(bundle):
    import onnx

    for path in bundle.iterdir():
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), path.name
        if path.suffix == ".npy":
            assert np.load(path, allow_pickle=False).dtype != object
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".onnx":
            onnx.checker.check_model(onnx.load(str(path)))


def _vectors(n_users=50, n_items=120, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_users, dim)).astype(np.float32), rng.normal(size=(n_items, dim)).astype(np.float32)


def _write(out, users, items, **options):
    return write_bundle(out, users, items, [f"u{i}" for i in range(len(users))], [f"i{i}" for i in range(len(items))],
                        None, np.ones(len(items), dtype=np.int64), None, {}, "test", **options)


def test_a_failed_onnx_check_writes_nothing(tmp_path, monkeypatch):
    real_export = export_module._export_towers

    def export_then_drift(users, items, directory):
        real_export(users, items, directory)  # the graphs hold the true vectors ...
        return UserTower(torch.from_numpy(users) + 1e-3), SequenceTower(torch.from_numpy(items))  # ... torch drifted

    monkeypatch.setattr(export_module, "_export_towers", export_then_drift)
    users, items = _vectors()
    with pytest.raises(ExportVerificationError, match=r"user_tower.onnx differs from the torch model by 0.001"):
        _write(tmp_path / "bundle", users, items)
    assert list(tmp_path.iterdir()) == []


def test_an_index_below_min_recall_writes_nothing(tmp_path):
    users, items = _vectors(n_items=600)
    spec = IndexSpec(kind="ivf", nlist=15, nprobe=1, min_recall=1.0)
    with pytest.raises(ExportVerificationError, match=r"ivf index reaches recall@10 0\.\d+ .* below min_recall 1.0"):
        _write(tmp_path / "bundle", users, items, index_spec=spec)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spec", [IndexSpec(kind="hnsw", hnsw_m=16, ef_search=64), IndexSpec(kind="ivf", nprobe=8)])
def test_approximate_indexes_report_their_recall(spec):
    users, items = _vectors(n_users=200, n_items=2000, dim=16, seed=1)
    index = build_index(items, spec)
    report = export_module._verify_index(index, IndexSpec(kind=spec.kind, min_recall=0.0), users, items, 1e-5)
    _, found = index.search(users, 10)
    exact = np.argsort(-(users.astype(np.float64) @ items.T.astype(np.float64)), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    assert report["recall"] == pytest.approx(recall) and 0.5 < recall <= 1.0


def test_existing_bundles_are_kept_unless_forced(tmp_path):
    (tmp_path / "bundle").mkdir()
    users, items = _vectors()
    with pytest.raises(UserInputError, match="already exists"):
        _write(tmp_path / "bundle", users, items)


def test_bad_inputs_are_user_errors(tmp_path):
    users, items = _vectors()
    with pytest.raises(UserInputError, match="user vectors are 8-d but item vectors 4-d"):
        _write(tmp_path / "b", users, items[:, :4])
    bad = items.copy()
    bad[3, 2] = np.nan
    with pytest.raises(UserInputError, match="item_vectors holds NaN"):
        _write(tmp_path / "b", users, bad)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_is_not_a_dot_product_is_refused():
    users, items = _vectors()

    class Biased:
        def score_users(self, batch):
            return torch.from_numpy(users)[batch] @ torch.from_numpy(items).T + torch.arange(len(items))

    with pytest.raises(ExportVerificationError, match="not a pure dot-product model"):
        export_module._check_dot_product(Biased(), torch.from_numpy(users), torch.from_numpy(items), 20, 1e-5,
                                         np.random.default_rng(0))


def test_unusable_checkpoints_are_named(tmp_path):
    with pytest.raises(UserInputError, match="checkpoint not found"):
        export_cli.export_checkpoint(tmp_path / "none.ckpt", tmp_path / "out")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(UserInputError, match="not a readable torch checkpoint"):
        export_cli.export_checkpoint(tmp_path / "text.ckpt", tmp_path / "out")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(UserInputError, match="not a prefengine checkpoint"):
        export_cli.export_checkpoint(tmp_path / "plain.ckpt", tmp_path / "out")
    assert cli.main(["export", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_an_ivfpq_export_stores_compressed_codes_and_reports_their_true_recall(checkpoint, model, tmp_path):
    import faiss

    out = tmp_path / "ivfpq"
    assert cli.main(["export", "--ckpt", str(checkpoint), "--out", str(out), "--index", "ivfpq", "--nlist", "4",
                     "--nprobe", "4", "--pq-m", "4", "--pq-bits", "4", "--min-recall", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "ivfpq"
    assert manifest["index"]["params"] == {"nlist": 4, "nprobe": 4, "pq_m": 4, "pq_bits": 4}
    index = faiss.read_index(str(out / "item_index.faiss"))
    assert isinstance(index, faiss.IndexIVFPQ) and index.ntotal == model.hparams.n_items
    assert index.code_size == 2  # 4 codes x 4 bits, instead of 8 floats x 4 bytes
    # Recall@10 of the stored index against brute force over every user, computed here independently.
    users = model.user_embeddings().numpy().astype(np.float32)
    items = model.item_embeddings().numpy().astype(np.float64)
    index.nprobe = 4  # every list: the only loss is the compression
    _, found = index.search(users, 10)
    exact = np.argsort(-(users.astype(np.float64) @ items.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    assert manifest["index"]["verification"]["recall"] == pytest.approx(recall)
    assert 0.2 < recall < 1.0  # lossy codes: an exact index would score 1.0
    with pytest.raises(UserInputError, match="pq_m 3 must divide the vector dimension 8"):
        build_index(items.astype(np.float32), IndexSpec(kind="ivfpq", nlist=4, pq_m=3, pq_bits=4))
    with pytest.raises(UserInputError, match="cannot train 256 codes"):
        build_index(items[:100].astype(np.float32), IndexSpec(kind="ivfpq", nlist=4, pq_m=4, pq_bits=8))
    with pytest.raises(UserInputError, match="nlist 500 exceeds the 100 items"):
        build_index(items[:100].astype(np.float32), IndexSpec(kind="ivfpq", nlist=500, pq_m=4, pq_bits=4))


def test_extra_files_and_sections_never_replace_the_bundles_own(tmp_path):
    manifest = {"graphs": {"user_tower": {}}, "files": {}, "model": {"kind": "k"}}
    for sections, message in (({"graphs": {"user_tower": {}}}, r"replace \['user_tower'\]"),
                              ({"files": {}}, "field of the bundle itself"), ({"model": "x"}, "existing 'model'")):
        with pytest.raises(UserInputError, match=message):
            export_module._merge_sections(manifest, sections)
    (tmp_path / "items.json").write_text("{}")
    source = tmp_path / "source.bin"
    source.write_bytes(b"x")
    for name, message in (("items.json", "would replace a file"), ("sub/x.onnx", "plain file name"),
                          ("ok.onnx", "is not a file")):
        with pytest.raises(UserInputError, match=message):
            export_module._copy_extra_files(tmp_path, {name: source if name != "ok.onnx" else tmp_path / "none"})
