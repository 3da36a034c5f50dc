"""Service settings: built by the CLI (flags or a YAML file) and handed to every worker as JSON in the environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SETTINGS_ENV = "PREFENGINE_SERVING_SETTINGS"


class SettingsError(ValueError):
    """A bad setting (unknown key, wrong type); the message names it."""


@dataclass(frozen=True)
class Settings:
    """What one server process needs to know.

    bundle: the bundle directory served at start.
    feedback_db: SQLite event log (created if missing).
    admin_token_env: the environment variable that holds the bearer token of /v1/admin/reload;
        reload is refused while it is unset or empty.
    max_body_bytes: larger request bodies get 413.
    threads: ONNX Runtime and faiss threads per request (parallelism comes from workers).
    synchronous: SQLite durability of the event log: FULL (fsync each commit) or NORMAL.
    sync_dir: with several workers, a directory where a reload is published so every worker
        follows it (set by the CLI); None for one worker.
    sync_interval_s: how often workers look for a published reload.
    batching: answer concurrent /v1/recommend queries in micro-batches (`serving.batching`);
        off: each request is answered alone on the event loop.
    batch_runner: "loop" (the batches are answered by a callback on the event loop, no thread hop;
        the default) or "thread" (one worker thread answers the batches, off the event loop).
    batch_window_ms: how long a batch may wait for more queries under concurrent load (a lone
        client never waits).
    batch_max_size: most queries in one batch.
    batch_min_shared: fewest flat-index queries that share one float32 scan; fewer are scanned
        one by one in float16.
    batch_max_excluded: a query excluding more items than this (seen items, exclude_items,
        category filters) takes the single-query filtered scan instead of the shared one.
    """

    bundle: str
    feedback_db: str = "artifacts/feedback/events.sqlite"
    admin_token_env: str = "PREFENGINE_ADMIN_TOKEN"
    max_body_bytes: int = 256 * 1024
    threads: int = 1
    synchronous: str = "FULL"
    sync_dir: str | None = None
    sync_interval_s: float = 1.0
    batching: bool = True
    batch_runner: str = "loop"  # measured: the lower p99 of the two (docs/benchmarks.md)
    batch_window_ms: float = 1.0
    batch_max_size: int = 32
    batch_min_shared: int = 6
    batch_max_excluded: int = 1024

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            expected = {"str": str, "int": int, "float": (int, float), "str | None": (str, type(None)),
                        "bool": bool}[spec.type]
            if not isinstance(value, expected) or (isinstance(value, bool) and spec.type != "bool"):
                raise SettingsError(f"setting '{spec.name}' must be {spec.type}, got {value!r}")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"setting 'max_body_bytes' must be at least 1024, got {self.max_body_bytes}")
        if self.threads < 1:
            raise SettingsError(f"setting 'threads' must be >= 1, got {self.threads}")
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise SettingsError(f"setting 'synchronous' must be FULL, NORMAL or EXTRA, got {self.synchronous!r}")
        if self.sync_interval_s <= 0:
            raise SettingsError("setting 'sync_interval_s' must be > 0")
        if self.batch_runner not in ("thread", "loop"):
            raise SettingsError(f"setting 'batch_runner' must be thread or loop, got {self.batch_runner!r}")
        if not 0 <= self.batch_window_ms <= 100:
            raise SettingsError(f"setting 'batch_window_ms' must be in [0, 100], got {self.batch_window_ms}")
        for name in ("batch_max_size", "batch_min_shared"):
            if getattr(self, name) < 1:
                raise SettingsError(f"setting '{name}' must be >= 1, got {getattr(self, name)}")
        if self.batch_max_excluded < 0:
            raise SettingsError(f"setting 'batch_max_excluded' must be >= 0, got {self.batch_max_excluded}")
        object.__setattr__(self, "bundle", str(Path(self.bundle).resolve()))

    @classmethod
    def from_mapping(cls, values: dict, where: str = "settings") -> Settings:
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
        if "bundle" not in values:
            raise SettingsError(f"{where}: 'bundle' is required")
        return cls(**values)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise SettingsError(f"{SETTINGS_ENV} is not set; start the server with `python -m serving --bundle DIR`")
        return cls.from_mapping(json.loads(raw), where=SETTINGS_ENV)
