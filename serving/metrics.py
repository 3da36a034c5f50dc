"""Prometheus metrics of the service and the ASGI middleware that records every request.

Requests are labelled by route template (`/v1/recommend`, never a raw path, so a scanner cannot
blow up the label set), method and status. With several workers the CLI points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before they start, and `/metrics` merges the
workers' files.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

BATCH_SIZE_BUCKETS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """The service's metrics, in their own registry (several apps may live in one test process)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        # In multiprocess mode the values live in files; the registry is built at scrape time.
        registry = None if self.multiprocess else self.registry
        self.requests = Counter("serving_requests_total", "HTTP requests by route, method and status",
                                ["endpoint", "method", "status"], registry=registry)
        self.latency = Histogram("serving_request_duration_seconds", "HTTP request latency by route, method and status",
                                 ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=registry)
        self.bundle_info = Gauge("serving_bundle_info", "1 for the bundle being served (labels name it)",
                                 ["bundle_version", "model_kind", "model_name"], registry=registry,
                                 multiprocess_mode="livemax")
        self.bundle_items = Gauge("serving_bundle_items", "items in the served bundle", registry=registry,
                                  multiprocess_mode="livemax")
        self.fallbacks = Counter("serving_recommend_fallback_total", "recommendations answered without a known user",
                                 ["fallback"], registry=registry)
        self.feedback_events = Counter("serving_feedback_events_total", "feedback events committed, by kind",
                                       ["kind"], registry=registry)
        self.batch_size = Histogram("serving_recommend_batch_size", "queries answered together in one micro-batch",
                                    buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self.reloads = Counter("serving_reloads_total", "bundle reloads by outcome", ["outcome"], registry=registry)
        self.auth_failures = Counter("serving_auth_failures_total", "requests with a missing or wrong bearer token",
                                     registry=registry)
        self.auth_throttled = Counter("serving_auth_throttled_total",
                                      "requests refused (429) after too many failed tokens from their address",
                                      registry=registry)
        self.feedback_throttled = Counter("serving_feedback_throttled_total",
                                          "feedback requests refused (429) by the per-client rate limit",
                                          registry=registry)
        self.feedback_unknown_items = Counter("serving_feedback_unknown_items_total",
                                              "feedback events naming an item the bundle does not know, by action",
                                              ["action"], registry=registry)
        self.feedback_unknown_users = Counter("serving_feedback_unknown_users_total",
                                              "feedback events stored for a user the bundle does not know",
                                              registry=registry)
        self._current: tuple[str, str, str] | None = None

    def set_bundle(self, version: str, kind: str, name: str, n_items: int) -> None:
        if self._current is not None:
            self.bundle_info.labels(*self._current).set(0)
        self._current = (version, kind, name)
        self.bundle_info.labels(version, kind, name).set(1)
        self.bundle_items.set(n_items)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        labels = (endpoint, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): times every HTTP request."""

    def __init__(self, app, metrics: ServiceMetrics, known_paths: frozenset[str] = frozenset()):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path is None:  # answered before routing (e.g. 413): label known paths, lump the rest
                path = scope["path"] if scope["path"] in self.known_paths else "unmatched"
            self.metrics.observe(path, scope["method"], status, time.perf_counter() - start)
