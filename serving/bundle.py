"""Read and validate a serving bundle: the only contract between `recsys` (which writes it) and `serving`.

A bundle is a directory (format version 1):

    manifest.json           format, versions, model, dimensions, metrics, sha256 of every other file
    user_tower.onnx         user_index int64 [batch] -> user_vector float32 [batch, dim]
    sequence_tower.onnx     item_index int64 [batch, length], mask float32 [batch, length]
                            -> query_vector float32 [batch, dim] (mean of the unmasked item vectors)
    item_index.faiss        faiss index of the item vectors (inner product); faiss ids = item indices
    item_vectors.npy        float32 [n_items, dim], the same vectors (exact re-scoring when an
                            approximate index returns too few items under a filter)
    item_popularity.npy     int64 [n_items], training interaction counts (the cold-start fallback)
    seen_indptr.npy, seen_indices.npy   CSR rows of each user's training items (exclude_seen)
    users.json              {"user_id": [...]}  outside user ids by user index
    items.json              {"item_id": [...], "title": [...], "category": [...]} by item index

Optional parts, each listed in the manifest's "files" like the rest:

    graphs.ranker           a personality ranker for users the model never saw: its ONNX graph and
                            features file (`serving.profile`); enables `profile` in requests
    generative              section of a TIGER/Mender bundle: encoder and decoder-step graphs, semantic
                            IDs, users' histories, for Mender a text encoder and tokenizer
                            (`serving.generative`); Mender enables `preferences` in requests

Nothing in a bundle is a pickle: arrays are .npy read with allow_pickle=False, tables are JSON.
`recsys.export` writes this layout; the manifest's names, fields, file rules and checksums are
`bundleformat.manifest`, which both sides import (tests check that an exported bundle loads here).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bundleformat.manifest import MANIFEST, BundleError, read_manifest, verify_files

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BundleData:
    """What a validated bundle holds, in memory (the ONNX graphs and faiss index are loaded by retrieval)."""

    path: Path
    manifest: dict[str, Any]
    user_ids: list[str]
    item_ids: list[str]
    titles: list[str]
    categories: list[str]
    item_vectors: np.ndarray
    item_popularity: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray

    @property
    def version(self) -> str:
        return self.manifest["bundle_version"]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])


def _load_array(bundle_dir: Path, name: str, dtype: np.dtype, ndim: int, mmap: bool = False) -> np.ndarray:
    try:
        array = np.load(bundle_dir / name, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as error:
        raise BundleError(bundle_dir, f"{name} is not a plain .npy array ({error})") from None
    if array.dtype != dtype or array.ndim != ndim:
        raise BundleError(bundle_dir, f"{name} must be {np.dtype(dtype).name} with {ndim} dimension(s), "
                                      f"got {array.dtype} {array.shape}")
    return array


def _load_json_columns(bundle_dir: Path, name: str, columns: tuple[str, ...], length: int) -> dict[str, list[str]]:
    try:
        table = json.loads((bundle_dir / name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(bundle_dir, f"{name} is not valid JSON ({error})") from None
    for column in columns:
        values = table.get(column) if isinstance(table, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BundleError(bundle_dir, f"{name}: '{column}' must be a list of strings")
        if len(values) != length:
            raise BundleError(bundle_dir, f"{name}: '{column}' has {len(values)} entries, manifest says {length}")
    return table


def load_bundle_data(bundle_dir: Path | str, verify: bool = True, key: bytes | None = None) -> BundleData:
    """Read the manifest (with a `key`, check its signature), check every checksum (unless `verify` is
    False) and load the tables and arrays."""
    bundle_dir = Path(bundle_dir).resolve()
    manifest = read_manifest(bundle_dir, key)
    if verify:
        verify_files(bundle_dir, manifest)
    n_items, n_users, dim = manifest["n_items"], manifest["n_users"], manifest["embedding_dim"]
    if n_items < 1 or n_users < 0 or dim < 1:
        raise BundleError(bundle_dir, f"{MANIFEST}: n_items={n_items}, n_users={n_users}, embedding_dim={dim} are not valid")
    items = _load_json_columns(bundle_dir, "items.json", ("item_id", "title", "category"), n_items)
    users = _load_json_columns(bundle_dir, "users.json", ("user_id",), n_users)
    # The vectors stay on disk until touched: an exact re-score is the rare path.
    vectors = _load_array(bundle_dir, "item_vectors.npy", np.dtype(np.float32), 2, mmap=True)
    if vectors.shape != (n_items, dim):
        raise BundleError(bundle_dir, f"item_vectors.npy is {vectors.shape}, manifest says ({n_items}, {dim})")
    popularity = _load_array(bundle_dir, "item_popularity.npy", np.dtype(np.int64), 1)
    if len(popularity) != n_items:
        raise BundleError(bundle_dir, f"item_popularity.npy has {len(popularity)} entries, manifest says {n_items}")
    indptr = _load_array(bundle_dir, "seen_indptr.npy", np.dtype(np.int64), 1)
    indices = _load_array(bundle_dir, "seen_indices.npy", np.dtype(np.int64), 1)
    if len(indptr) != n_users + 1 or indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise BundleError(bundle_dir, "seen_indptr.npy is not a valid CSR row pointer for the users")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise BundleError(bundle_dir, "seen_indices.npy holds item indices outside the catalog")
    if len(set(items["item_id"])) != n_items or len(set(users["user_id"])) != n_users:
        raise BundleError(bundle_dir, "items.json / users.json hold duplicate ids")
    return BundleData(path=bundle_dir, manifest=manifest, user_ids=users["user_id"], item_ids=items["item_id"],
                      titles=items["title"], categories=items["category"], item_vectors=vectors,
                      item_popularity=popularity, seen_indptr=indptr, seen_indices=indices)
