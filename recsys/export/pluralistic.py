"""Export of a pluralistic recommender: the embedding bundle plus its prototypes, for placing new users.

The towers, index and tables are those of any embedding model (`recsys.export.embeddings.write_bundle`), with
the item bias folded in as one more coordinate. Added: `prototypes.npy` (K, d + 1) and the manifest
section "pluralistic" (prior logits, placement prior, recommended comparisons) that
`bundleformat.pluralistic` places a new user with. Before writing, the export checks that the numpy
placement equals the model's torch placement on sampled comparisons.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bundleformat.pluralistic import PROTOTYPES_FILE, SECTION, Placement
from recsys.errors import UserInputError
from recsys.export.embeddings import (
    ExportVerificationError,
    IndexSpec,
    _check_dot_product,
    load_recommender,
    save_npy,
    sha256_file,
    write_bundle,
)


def placement_section(model) -> dict:
    hp = model.hparams
    return {"prototypes": PROTOTYPES_FILE, "prior_logits": [float(x) for x in model.prior_logits()],
            "placement_prior": float(hp.placement_prior),
            "recommended_comparisons": int(hp.recommended_comparisons)}


def check_placement(model, placement: Placement, rng: np.random.Generator, users: int = 8) -> float:
    """Largest |numpy - torch| score of users placed from `recommended_comparisons` random comparisons."""
    n_items, m = model.hparams.n_items, placement.recommended_comparisons
    preferred, over = rng.integers(0, n_items, (users, m)), rng.integers(0, n_items, (users, m))
    torch_scores = model.score_placed(model.place_users(preferred, over)).numpy()
    items = model.item_embeddings().double().numpy()
    error = 0.0
    for u in range(users):
        vector, _ = placement.query(preferred[u], over[u])
        error = max(error, float(np.abs(items @ vector - torch_scores[u]).max()))
    return error


def export_pluralistic(ckpt_path: Path, out_dir: Path | str, model_name: str | None, bundle_version: str | None,
                       verify_sample: int, tolerance: float, overwrite: bool, seed: int,
                       index_spec: IndexSpec | None = None) -> Path:
    model, block = load_recommender(ckpt_path)
    if model.users_kind != "mixture":
        raise UserInputError(f"{ckpt_path}: only model.users 'mixture' has prototypes to place new users with")
    for key in ("vocab_users", "vocab_items"):
        if key not in block:
            raise UserInputError(f"{ckpt_path}: the 'prefengine' block lacks '{key}' (trained without a DataModule?)")
    user_vectors, item_vectors = model.user_embeddings().float(), model.item_embeddings().float()
    rng = np.random.default_rng(seed)
    dot_error = _check_dot_product(model, user_vectors, item_vectors, verify_sample, tolerance, rng)
    section = placement_section(model)
    prototypes = model.prototype_embeddings().float().numpy()
    placement = Placement.from_arrays(prototypes, item_vectors.numpy(), section)
    placement_error = check_placement(model, placement, rng)
    if placement_error > tolerance:
        raise ExportVerificationError(f"the numpy placement differs from the model's by {placement_error:.3g} "
                                      f"(tolerance {tolerance})")
    model_info = {"checkpoint": ckpt_path.name, "checkpoint_sha256": sha256_file(ckpt_path),
                  "class": block.get("model_class"), "score_check_max_abs_error": dot_error}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / PROTOTYPES_FILE
        save_npy(path, prototypes)
        return write_bundle(
            out_dir, user_vectors.numpy(), item_vectors.numpy(), block["vocab_users"], block["vocab_items"],
            block.get("catalog"), block.get("item_popularity"), block.get("train_items_by_user"),
            block.get("metrics"), block["model_kind"], model_name, index_spec, bundle_version=bundle_version,
            vocab_digest=block.get("vocab_digest"), model_info=model_info, verify_sample=verify_sample,
            tolerance=tolerance, overwrite=overwrite, seed=seed, extra_files={PROTOTYPES_FILE: path},
            manifest_sections={SECTION: {**section, "verification": {"placement_max_abs_error": placement_error}}})


__all__ = ["check_placement", "export_pluralistic", "placement_section"]
