"""Shared fixtures: small exported bundles per session (vectors, a personality ranker, a Mender retriever)
and real servers started on free ports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_bundles import MenderBundle, PersonalityBundle, build_mender_bundle, build_personality_bundle
from serving_helpers import Server, World, export, make_world


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, world) -> Path:
    return export(world, tmp_path_factory.mktemp("bundles") / "flat")


def _one_thread(build, root: Path):
    # Tiny models: threads only contend on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build(root)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def personality(tmp_path_factory) -> PersonalityBundle:
    return _one_thread(build_personality_bundle, tmp_path_factory.mktemp("personality"))


@pytest.fixture(scope="session")
def mender(tmp_path_factory) -> MenderBundle:
    return _one_thread(build_mender_bundle, tmp_path_factory.mktemp("mender"))


@pytest.fixture
def start_server(tmp_path):
    servers: list[Server] = []

    def start(bundle: Path, **options) -> Server:
        server = Server(bundle, options.pop("feedback_db", tmp_path / "events.sqlite"), **options)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
