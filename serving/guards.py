"""What stands between a hostile client and the service: throttles, rate limits, bundle-path
confinement and error bodies that cannot fail to encode. Each piece is small and event-loop only
(no locks): one worker's state, kept in memory with a bounded number of clients."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

MAX_TRACKED_CLIENTS = 10_000  # the oldest client is forgotten beyond this, so memory stays bounded


class FailureThrottle:
    """Failed authentications per client address in a sliding window: `max_failures` failures within
    `window_s` seconds block that address (429) until the oldest of them leaves the window."""

    def __init__(self, max_failures: int, window_s: float, clock=time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None when it is not blocked."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.max_failures:
            return None
        return max(failures[0] + self.window_s - now, 0.001)

    def failed(self, client: str) -> None:
        failures = self._failures.setdefault(client, deque())
        failures.append(self.clock())
        self._failures.move_to_end(client)
        while len(failures) > self.max_failures:
            failures.popleft()
        while len(self._failures) > MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)


class RateLimiter:
    """A token bucket per client address: `rate_per_s` units per second, up to `burst` at once.
    A rate of 0 turns the limit off."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic):
        self.rate_per_s, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str, units: int) -> float | None:
        """Spend `units` of `client`'s budget; None if it had them, else the seconds until it will."""
        if self.rate_per_s <= 0:
            return None
        now = self.clock()
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        if units > tokens:
            self._buckets[client] = (tokens, now)
            self._buckets.move_to_end(client)
            return max((units - tokens) / self.rate_per_s, 0.001)
        self._buckets[client] = (tokens - units, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > MAX_TRACKED_CLIENTS:
            self._buckets.popitem(last=False)
        return None


def client_address(scope_client: Any) -> str:
    """The peer address of a request (behind a proxy: the proxy's; see the README's threat model)."""
    return scope_client.host if scope_client is not None else "unknown"


# --- bundle paths ----------------------------------------------------------------------------------
class BundlePathError(ValueError):
    """A reload target that is not a bundle inside the bundle root; the message names no host path."""


def resolve_bundle_request(root: Path, requested: str) -> Path:
    """The bundle directory a reload names: a name or relative path under `root`, or an absolute path
    that resolves inside it. `..`, NUL and anything that resolves (through symlinks too) outside `root`
    are refused, before anything on the disk is looked at, so the answer says nothing of what exists."""
    if "\x00" in requested:
        raise BundlePathError("the bundle path must not contain a NUL character")
    if not is_valid_text(requested):
        raise BundlePathError("the bundle path must be valid Unicode text")
    candidate = Path(requested)
    if ".." in candidate.parts:
        raise BundlePathError("the bundle path must not contain '..'")
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise BundlePathError("reload takes a bundle name (a directory inside the server's bundle root) "
                              "or a path that resolves inside it")
    return resolved


# --- error bodies that always encode -----------------------------------------------------------------
MAX_ECHO_CHARS = 80
MAX_ECHO_ITEMS = 10


def is_valid_text(value: str) -> bool:
    """False for text that cannot be written as UTF-8 (lone surrogates such as '\\ud800')."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`value` cut to `limit` characters with unencodable characters escaped ('\\ud800' as text)."""
    cut = value[:limit] + ("..." if len(value) > limit else "")
    return cut if is_valid_text(cut) else cut.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_echo(value: Any, depth: int = 0) -> Any:
    """A JSON-encodable, bounded copy of client input for an error body: strings cut and escaped,
    non-finite and huge numbers as text, containers cut to a few items and levels."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**18 else safe_text(f"{value:.3e}")
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return safe_text(value)
    if depth >= 3:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ECHO_ITEMS]
        return {safe_text(str(k)): safe_echo(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [safe_echo(v, depth + 1) for v in value[:MAX_ECHO_ITEMS]]
    return safe_text(str(value))


def safe_validation_errors(errors: list[dict]) -> list[dict]:
    """FastAPI's validation errors, made safe to encode and short: the offending input is echoed cut
    and escaped, so a NaN, a lone surrogate or a megabyte string gives a 422 rather than a 500."""
    safe = []
    for error in errors[:MAX_ECHO_ITEMS]:
        entry = {"type": safe_text(str(error.get("type", ""))),
                 "loc": [part if isinstance(part, int) else safe_text(str(part)) for part in error.get("loc", ())],
                 "msg": safe_text(str(error.get("msg", "")), 300)}
        if "input" in error:
            entry["input"] = safe_echo(error["input"])
        if error.get("ctx"):
            entry["ctx"] = {safe_text(str(k)): safe_echo(v) if isinstance(v, int | float | str) else safe_text(str(v))
                            for k, v in error["ctx"].items()}
        safe.append(entry)
    return safe
