"""Service settings: built by the CLI (flags or a YAML file) and handed to every worker as JSON in the environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SETTINGS_ENV = "PREFENGINE_SERVING_SETTINGS"
MIN_TOKEN_CHARS = 32  # a bearer token shorter than this is guessable; the server refuses to start with one


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
    bundle_root: the directory reloads may load bundles from (a name, or a path that resolves
        inside it); default: the parent of `bundle`.
    header_timeout_s: a client that has not sent its request line and headers within this many
        seconds of starting them gets 408 and the connection closes (slow-header clients).
    body_timeout_s: the whole request body must arrive within this many seconds of the headers, else
        408 and the connection closes (a body shorter than its Content-Length).
    docs: serve /openapi.json (the HTML /docs pages are never served: they load assets from a CDN);
        False (`--no-docs`) for production.
    admin_max_failures / admin_failure_window_s: that many failed bearer tokens (admin or feedback)
        from one client address within the window are answered 429 until the window passes.
    feedback_token_env: the environment variable that holds the bearer token feedback writers must
        send; no token is asked while it is unset or empty.
    feedback_rate_per_s / feedback_burst: events per second each client address may post to
        /v1/feedback, and how many at once (a token bucket); 0 turns the limit off.
    feedback_unknown_items: "reject" (an event naming an item the served bundle does not know is a
        422) or "flag" (it is stored with item_known = 0, counted, and left out by export-feedback).
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
    bundle_root: str | None = None
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    docs: bool = True
    admin_max_failures: int = 5
    admin_failure_window_s: float = 60.0
    feedback_token_env: str = "PREFENGINE_FEEDBACK_TOKEN"
    feedback_rate_per_s: float = 100.0
    feedback_burst: int = 2000
    feedback_unknown_items: str = "reject"

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
        for name in ("header_timeout_s", "body_timeout_s", "admin_failure_window_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise SettingsError(f"setting '{name}' must be in (0, 3600] seconds, got {getattr(self, name)}")
        if self.admin_max_failures < 1:
            raise SettingsError(f"setting 'admin_max_failures' must be >= 1, got {self.admin_max_failures}")
        if self.feedback_rate_per_s < 0:
            raise SettingsError(f"setting 'feedback_rate_per_s' must be >= 0 (0: no limit), got {self.feedback_rate_per_s}")
        if self.feedback_burst < 1:
            raise SettingsError(f"setting 'feedback_burst' must be >= 1, got {self.feedback_burst}")
        if self.feedback_unknown_items not in ("reject", "flag"):
            raise SettingsError(f"setting 'feedback_unknown_items' must be reject or flag, got {self.feedback_unknown_items!r}")
        object.__setattr__(self, "bundle", str(Path(self.bundle).resolve()))
        root = Path(self.bundle).parent if self.bundle_root is None else Path(self.bundle_root).resolve()
        object.__setattr__(self, "bundle_root", str(root))

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


def bearer_token(variable: str) -> str:
    """The token in environment variable `variable` ("" when unset: that endpoint takes no token / is closed);
    SettingsError for a token shorter than MIN_TOKEN_CHARS."""
    token = os.environ.get(variable, "")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise SettingsError(f"{variable} holds a token of {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def check_tokens(settings: Settings) -> tuple[str, str]:
    """The admin and feedback tokens of `settings`, each checked by `bearer_token`."""
    return bearer_token(settings.admin_token_env), bearer_token(settings.feedback_token_env)
