"""Semantic IDs: the collision token, ID files, and the RQ-VAE's quantization, k-means start and report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.errors import DataFormatError, UserInputError
from recsys.models.semantic_ids import RQVAE, SemanticIds, train_rqvae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_collision_token_ranks_items_sharing_codes():
    codes = np.array([[0, 1, 2], [0, 1, 2], [1, 1, 1], [0, 1, 2], [1, 1, 1]])
    ids = SemanticIds.from_codes(codes, [4, 4, 4])
    assert ids.codes[:, 3].tolist() == [0, 1, 0, 2, 1]
    assert ids.level_sizes == (4, 4, 4, 3)
    assert len(np.unique(ids.codes, axis=0)) == len(codes)
    assert ids.collision_stats() == {"collision_rate": 1 - 2 / 5, "max_group": 3.0}


def test_collision_token_makes_random_codes_unique():
    codes = np.random.default_rng(0).integers(0, 3, size=(500, 3))  # 27 prefixes for 500 items
    ids = SemanticIds.from_codes(codes)
    assert len(np.unique(ids.codes, axis=0)) == 500
    _, counts = np.unique(codes, axis=0, return_counts=True)
    assert ids.level_sizes[3] == counts.max()


def test_id_files_round_trip_and_three_codes_get_the_collision_token(tmp_path):
    ids = SemanticIds.from_codes(np.array([[0, 1, 2], [0, 1, 2], [3, 0, 0]]), [4, 4, 4])
    path = ids.write(tmp_path / "ids.json", ["a", "b", "c"])
    again = SemanticIds.read(path, ["a", "b", "c"])
    np.testing.assert_array_equal(again.codes, ids.codes)
    assert SemanticIds.read(path, ["c", "a"]).codes.tolist() == [[3, 0, 0, 0], [0, 1, 2, 0]]
    (tmp_path / "three.json").write_text(json.dumps({"a": [1, 1, 1], "b": [1, 1, 1]}))
    assert SemanticIds.read(tmp_path / "three.json", ["a", "b"]).codes[:, 3].tolist() == [0, 1]


@pytest.mark.parametrize("payload, message", [
    ({"a": [1, 2, 3]}, "1 items of the data have no semantic ID"),
    ({"a": [1, 2, 3], "b": [1, "x", 3]}, "field 'b'"),
    ({"a": [1, 2, 3], "b": [1, 2]}, "same number of codes"),
    ({"a": [1, 2, 3, 0], "b": [1, 2, 3, 0]}, "not unique"),
    ([1, 2], "non-empty JSON object"),
])
def test_bad_id_files_name_the_file_and_the_problem(tmp_path, payload, message):
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(DataFormatError, match=message) as error:
        SemanticIds.read(path, ["a", "b"])
    assert str(path) in str(error.value)


def test_ids_must_be_unique_and_in_range():
    with pytest.raises(UserInputError, match="not unique"):
        SemanticIds(np.array([[0, 0], [0, 0]]), (1, 1))
    with pytest.raises(UserInputError, match="level_size"):
        SemanticIds(np.array([[0, 2]]), (1, 2))


def test_quantization_picks_the_nearest_code_of_each_residual():
    model = RQVAE(input_dim=6, hidden_dims=[8], latent_dim=3, n_levels=3, codebook_size=5, seed=1)
    z = torch.randn(40, 3, generator=torch.Generator().manual_seed(2))
    z_q, codes, _, _ = model.quantize(z)
    residual, total = z.clone(), torch.zeros_like(z)
    for level in range(3):
        book = model.codebooks[level].detach()
        expected = torch.cdist(residual, book).argmin(dim=1)
        assert torch.equal(codes[:, level], expected)
        residual = residual - book[expected]
        total = total + book[expected]
    torch.testing.assert_close(z_q, total)  # the forward value is the sum of the chosen codes


def test_kmeans_start_quantizes_few_distinct_points_exactly():
    rng = np.random.default_rng(0)
    points = np.repeat(rng.normal(size=(4, 6)), 5, axis=0).astype(np.float32)  # 4 distinct points
    model = RQVAE(input_dim=6, hidden_dims=[8], latent_dim=4, n_levels=2, codebook_size=8, seed=0)
    model.fit_input_scaling(points)
    model.initialize_codebooks(points)
    with torch.no_grad():
        z = model.encoder(model.normalize(torch.from_numpy(points)))
        z_q, codes, _, _ = model.quantize(z)
    torch.testing.assert_close(z_q, z, atol=1e-5, rtol=0)  # level 1 already sits on every point
    assert len(np.unique(codes[:, 0].numpy())) == 4


def test_training_lowers_reconstruction_and_reports_usage_and_collisions():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, 16))
    x = (centers[rng.integers(0, 12, 240)] + 0.05 * rng.normal(size=(240, 16))).astype(np.float32)
    untrained = RQVAE(input_dim=16, hidden_dims=[32], latent_dim=8, codebook_size=16, seed=0)
    untrained.fit_input_scaling(x)
    untrained.initialize_codebooks(x)
    before = untrained.report(x)["reconstruction_loss"]
    model, ids, report = train_rqvae(x, max_epochs=15, batch_size=60, progress=False, hidden_dims=[32],
                                     latent_dim=8, codebook_size=16, lr=3e-3)
    assert report["reconstruction_loss"] < 0.5 * before
    assert len(report["codebook_usage"]) == 3 and all(0 < u <= 1 for u in report["codebook_usage"])
    assert ids.n_items == 240 and ids.n_levels == 4 and len(np.unique(ids.codes, axis=0)) == 240
    assert report["collision_rate"] == ids.collision_stats()["collision_rate"]
    np.testing.assert_array_equal(ids.codes[:, :3], model.codes(x))
