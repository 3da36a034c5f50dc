"""Helpers of the serving tests: a small world of vectors, exporting it, breaking bundles, a real server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.local import free_port, wait_ready

N_USERS, N_ITEMS, DIM = 240, 600, 16
CATEGORIES = ("books", "games", "music", "tools")


@dataclass(frozen=True)
class World:
    """The vectors and tables a bundle was exported from: the tests' independent reference."""

    users: np.ndarray
    items: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    categories: list[str]
    popularity: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray

    def seen(self, user: int) -> np.ndarray:
        return self.seen_indices[self.seen_indptr[user]:self.seen_indptr[user + 1]]


def make_world(seed: int = 7) -> World:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 25, size=N_USERS)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(N_ITEMS, size=n, replace=False)) for n in lengths]).astype(np.int64)
    return World(
        users=rng.normal(size=(N_USERS, DIM)).astype(np.float32),
        items=rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
        user_ids=[f"user-{i}" for i in range(N_USERS)],
        item_ids=[f"item-{i}" for i in range(N_ITEMS)],
        categories=[CATEGORIES[i % len(CATEGORIES)] for i in range(N_ITEMS)],
        # Distinct counts, so the popularity order has no ties to argue about.
        popularity=rng.permutation(N_ITEMS).astype(np.int64) * 3,
        seen_indptr=indptr,
        seen_indices=indices,
    )


def export(world: World, out: Path, **options) -> Path:
    from recsys.export.embeddings import write_bundle

    return write_bundle(out, world.users, world.items, world.user_ids, world.item_ids,
                        {"title": [f"Title {i}" for i in range(N_ITEMS)], "category": world.categories},
                        world.popularity, {"indptr": world.seen_indptr, "indices": world.seen_indices},
                        {"test/recall@10": 0.25}, "implicit-bpr", "test-model", **options)


def copy_bundle(source: Path, target: Path, version: str | None = None) -> Path:
    """A copy of a bundle, optionally under another bundle_version (still valid: the manifest is not checksummed)."""
    shutil.copytree(source, target)
    if version is not None:
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["bundle_version"] = version
        (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def rewrite_file(bundle: Path, name: str, payload: bytes) -> None:
    """Replace a file and re-sign it in the manifest, so only the content check can catch it."""
    import hashlib

    (bundle / name).write_bytes(payload)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# Variables the server reads, kept from the test process's environment only when a test sets them.
SERVER_ENV = ("PREFENGINE_ADMIN_TOKEN", "PREFENGINE_FEEDBACK_TOKEN", "PREFENGINE_BUNDLE_KEY", "PROMETHEUS_MULTIPROC_DIR")


# --- a real server -------------------------------------------------------------------------------
class Server:
    """`python -m serving` in a subprocess on a free loopback port."""

    def __init__(self, bundle: Path, feedback_db: Path, token: str | None = None, workers: int = 1,
                 extra: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**{k: v for k, v in os.environ.items() if k not in SERVER_ENV}, **(env or {})}
        if token is not None:
            env["PREFENGINE_ADMIN_TOKEN"] = token
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one would stall the server.
        self.log = feedback_db.with_name(f"server-{self.port}.log")
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving", "--bundle", str(bundle), "--port", str(self.port),
                 "--feedback-db", str(feedback_db), "--workers", str(workers), "--log-level", "warning", *extra],
                env=env, stdout=output, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        try:
            wait_ready(self.url, self.process, timeout)
        except RuntimeError as error:
            raise RuntimeError(f"{error}; its log:\n{self.log.read_text()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


# --- in-process apps and checkpoints of real models --------------------------------------------
@contextlib.contextmanager
def in_process_client(bundle: Path, feedback_db: Path, token: str | None = None, **settings):
    """FastAPI's TestClient around an app already serving `bundle` (the lifespan runs, as in a server);
    `settings` are further `Settings` fields (bundle_root, ...)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.retrieval import Retriever
    from serving.settings import Settings

    saved = os.environ.pop("PREFENGINE_ADMIN_TOKEN", None)
    if token is not None:
        os.environ["PREFENGINE_ADMIN_TOKEN"] = token
    try:
        app = create_app(Settings(bundle=str(bundle), feedback_db=str(feedback_db), **settings), Retriever.load(bundle))
    finally:
        os.environ.pop("PREFENGINE_ADMIN_TOKEN", None)
        if saved is not None:
            os.environ["PREFENGINE_ADMIN_TOKEN"] = saved
    with TestClient(app) as client:
        yield client


def post_recommend(client, **body) -> dict:
    response = client.post("/v1/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def save_lightning_checkpoint(model, path: Path) -> Path:
    """A checkpoint as Lightning writes it (hyper-parameters, state, the model's own block), without a Trainer."""
    import pytorch_lightning as pl
    import torch

    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": pl.__version__}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path
