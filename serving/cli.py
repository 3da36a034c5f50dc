"""`python -m serving ...`: run the API, or turn the feedback log into training data.

    python -m serving --bundle DIR [--host 127.0.0.1] [--port 8000] [--workers 1] [--config FILE.yaml]
    python -m serving export-feedback --db FILE --out FILE.csv [--target implicit|rating]

The bundle is validated (manifest, checksums, ONNX graphs, faiss index) before the server binds
its port, so a bad bundle exits at once with one line and status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import uvicorn

from bundleformat.manifest import BundleError, read_manifest, verify_files
from bundleformat.signature import key_from_env
from serving.feedback import KINDS, FeedbackError, export_feedback
from serving.http_protocol import DEFAULT_HEADER_TIMEOUT_S, PROTOCOL
from serving.settings import SETTINGS_ENV, Settings, SettingsError, check_tokens

SERVER_KEYS = ("host", "port", "workers", "log_level", "access_log", "timeout_keep_alive", "limit_concurrency",
               "backlog")
SERVER_DEFAULTS = {"host": "127.0.0.1", "port": 8000, "workers": 1, "log_level": "info", "access_log": False,
                   "timeout_keep_alive": 5, "limit_concurrency": 1000, "backlog": 2048}


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving", description="Serve recommendations from a bundle.",
        epilog="other command: python -m serving export-feedback --db FILE --out FILE.csv (see its --help)")
    parser.add_argument("--config", type=Path, help="YAML file of settings (flags given here override it)")
    parser.add_argument("--bundle", help="bundle directory written by `python -m recsys export`")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    parser.add_argument("--feedback-db", default=None, help="SQLite event log (default artifacts/feedback/events.sqlite)")
    parser.add_argument("--admin-token-env", default=None,
                        help="environment variable holding the reload bearer token (default PREFENGINE_ADMIN_TOKEN)")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="larger request bodies get 413")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL", "EXTRA"), default=None,
                        help="SQLite durability of the event log (default FULL: fsync per commit)")
    parser.add_argument("--batching", action=argparse.BooleanOptionalAction, default=None,
                        help="answer concurrent recommendations in micro-batches (default on)")
    parser.add_argument("--batch-runner", choices=("thread", "loop"), default=None,
                        help="who answers a batch: a callback on the event loop (default) or a worker thread")
    parser.add_argument("--batch-window-ms", type=float, default=None,
                        help="longest wait of a batch for more queries under concurrent load (default 1.0)")
    parser.add_argument("--batch-max-size", type=int, default=None, help="most queries in one batch (default 32)")
    parser.add_argument("--log-level", default=None, help="uvicorn log level (default info)")
    parser.add_argument("--access-log", action="store_true", default=None, help="log every request (off by default)")
    guard = parser.add_argument_group("hostile clients (see the README's threat model)")
    guard.add_argument("--bundle-root", default=None,
                       help="directory that reloads may load bundles from: a bundle name, or a path that resolves "
                            "inside it (default: the parent of --bundle)")
    guard.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                       help="serve the OpenAPI schema at /openapi.json (default on; --no-docs for production). "
                            "The HTML /docs pages are never served: they would load their assets from a CDN")
    guard.add_argument("--header-timeout-s", type=float, default=None,
                       help="request line and headers must arrive within this (default 10 s), else 408 and close")
    guard.add_argument("--body-timeout-s", type=float, default=None,
                       help="the request body must arrive within this after the headers (default 10 s), else 408")
    guard.add_argument("--timeout-keep-alive", type=int, default=None,
                       help="seconds an idle keep-alive connection stays open (default 5)")
    guard.add_argument("--limit-concurrency", type=int, default=None,
                       help="open connections + tasks per worker beyond which uvicorn answers 503 (default 1000)")
    guard.add_argument("--backlog", type=int, default=None,
                       help="connections the kernel queues before uvicorn accepts them (default 2048)")
    guard.add_argument("--feedback-rate-per-s", type=float, default=None,
                       help="feedback events per second per client address (token bucket; default 100; 0: no limit)")
    guard.add_argument("--feedback-unknown-items", choices=("reject", "flag"), default=None,
                       help="feedback naming an item the bundle does not know: 422 (reject, default) or stored "
                            "flagged (flag)")
    return parser


def _read_config(path: Path) -> dict:
    import yaml

    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        raise SettingsError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or 'unreadable'})") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: must hold a mapping of settings")
    return values


def _settings_and_server(args: argparse.Namespace) -> tuple[Settings, dict]:
    values = _read_config(args.config) if args.config else {}
    server = dict(SERVER_DEFAULTS)
    server.update({key: values.pop(key) for key in SERVER_KEYS if key in values})
    flags = {"bundle": args.bundle, "feedback_db": args.feedback_db, "admin_token_env": args.admin_token_env,
             "max_body_bytes": args.max_body_bytes, "synchronous": args.synchronous, "batching": args.batching, "batch_runner": args.batch_runner,
             "batch_window_ms": args.batch_window_ms, "batch_max_size": args.batch_max_size,
             "bundle_root": args.bundle_root, "docs": args.docs, "header_timeout_s": args.header_timeout_s,
             "body_timeout_s": args.body_timeout_s, "feedback_rate_per_s": args.feedback_rate_per_s,
             "feedback_unknown_items": args.feedback_unknown_items}
    values.update({key: value for key, value in flags.items() if value is not None})
    server.update({key: getattr(args, key) for key in SERVER_KEYS if getattr(args, key) is not None})
    if "bundle" not in values:
        raise SettingsError("give --bundle DIR (or 'bundle:' in --config)")
    for key in ("workers", "timeout_keep_alive", "limit_concurrency", "backlog"):
        if not isinstance(server[key], int) or isinstance(server[key], bool) or server[key] < 1:
            raise SettingsError(f"{key} must be a positive integer, got {server[key]!r}")
    return Settings.from_mapping(values, where=str(args.config or "flags")), server


class NoDelayConfig(uvicorn.Config):
    """The uvicorn config of the service: the httptools protocol with a header-read timeout
    (`serving.http_protocol`), and a listening socket with TCP_NODELAY.

    uvicorn binds its multi-worker socket with protocol 0, so asyncio never sets TCP_NODELAY on
    accepted connections and Nagle's algorithm meets delayed ACKs: about 40 ms on every response.
    Re-wrapping the same descriptor lets Python read its real protocol (TCP) back from the kernel.
    (Module level: uvicorn pickles the config into each spawned worker.)"""

    def __init__(self, *args, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **kwargs):
        super().__init__(*args, http=PROTOCOL, **kwargs)
        self.header_timeout_s = header_timeout_s

    def bind_socket(self) -> socket.socket:
        listening = socket.socket(fileno=super().bind_socket().detach())
        listening.set_inheritable(True)
        return listening


def serve(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)
    settings, server = _settings_and_server(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    check_tokens(settings)  # a weak token fails here, before anything loads or binds
    common = {key: server[key] for key in SERVER_KEYS if key != "workers"}
    common["header_timeout_s"] = settings.header_timeout_s
    if server["workers"] == 1:
        from serving.app import create_app
        from serving.retrieval import Retriever

        retriever = Retriever.load(settings.bundle, verify=True, threads=settings.threads, key=key_from_env())
        server_ = uvicorn.Server(NoDelayConfig(create_app(settings, retriever), **common))
        server_.run()
        return 0 if server_.started else 1
    # Several workers: each loads the bundle itself; check it here first so a bad one fails before binding.
    verify_files(settings.bundle, read_manifest(settings.bundle, key_from_env()))
    sync_dir = tempfile.mkdtemp(prefix="prefengine-serving-")
    metrics_dir = tempfile.mkdtemp(prefix="prefengine-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[SETTINGS_ENV] = replace(settings, sync_dir=sync_dir).to_env()
    try:
        from uvicorn.supervisors import Multiprocess

        config = NoDelayConfig("serving.app:create_app_from_env", factory=True, workers=server["workers"], **common)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        shutil.rmtree(sync_dir, ignore_errors=True)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def export_feedback_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving export-feedback",
                                     description="Write the feedback event log as a CSV table for "
                                                 "`recsys.data.formats.load(path, format='table')`.")
    parser.add_argument("--db", required=True, type=Path, help="the SQLite event log")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument("--target", choices=("implicit", "rating"), default="implicit",
                        help="implicit: user,item,timestamp,label (click/purchase 1, skip 0, rating >= threshold 1); "
                             "rating: user,item,timestamp,rating from rating events")
    parser.add_argument("--positive-rating", type=float, default=4.0, help="rating counted as a positive label")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"event kinds to export (default {','.join(KINDS)})")
    parser.add_argument("--drop-clients-over", type=int, default=None, metavar="EVENTS_PER_HOUR",
                        help="leave out every event of a client address that posted more than this many events "
                             "in one hour of arrival (a likely poisoner or a runaway script)")
    parser.add_argument("--drop-users-over", type=int, default=None, metavar="EVENTS_PER_HOUR",
                        help="leave out every event of a user id with more than this many events in one hour")
    parser.add_argument("--keep-unknown-items", action="store_true",
                        help="also export events the server stored flagged as naming an unknown item")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the counts are printed below
    counts = export_feedback(args.db, args.out, target=args.target, positive_rating=args.positive_rating,
                             kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
                             keep_unknown_items=args.keep_unknown_items,
                             max_client_events_per_hour=args.drop_clients_over,
                             max_user_events_per_hour=args.drop_users_over)
    print(f"wrote {counts.written} rows to {args.out}" +
          (f" (left out: {counts.skipped})" if counts.skipped else ""))
    for what, dropped, limit in (("clients", counts.dropped_clients, args.drop_clients_over),
                                 ("users", counts.dropped_users, args.drop_users_over)):
        if dropped:
            names = ", ".join(f"{name} ({n})" for name, n in sorted(dropped.items(), key=lambda kv: -kv[1])[:20])
            print(f"dropped {sum(dropped.values())} events of {len(dropped)} {what} over {limit} events/hour: {names}"
                  + (" ..." if len(dropped) > 20 else ""))
    return 0


COMMANDS = {"export-feedback": export_feedback_command}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else serve(argv)
    except (BundleError, FeedbackError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
