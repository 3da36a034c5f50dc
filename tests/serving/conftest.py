"""Shared fixtures: one small exported bundle per session and real servers started on free ports."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_helpers import Server, World, export, make_world


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, world) -> Path:
    return export(world, tmp_path_factory.mktemp("bundles") / "flat")


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
