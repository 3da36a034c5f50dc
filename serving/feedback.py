"""The feedback event log: SQLite in WAL mode, one writer thread with group commit.

`FeedbackLog.append(events)` returns a future that completes only after the transaction holding
the events has committed (with `synchronous=FULL` the WAL is fsynced first), so an acknowledged
event survives a crash of the server process, and with FULL a power loss. Events that arrive while
a commit is in flight are committed together in the next transaction: one fsync serves many
requests. Several server workers may share one database file (SQLite serialises their writers).

`export_feedback(db, out)` turns the log into a CSV table that `recsys.data.formats.load` reads
(format "table"), so feedback becomes training data. Because anyone who can post feedback can try to
steer that training data, every event keeps the client address it came from and whether its user and
item were known to the served bundle; the export leaves out flagged unknown items and, on request,
every event of a client or user that posted more than a given number of events in one hour.
"""

from __future__ import annotations

import csv
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("click", "purchase", "rating", "skip")
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('click', 'purchase', 'rating', 'skip')),
    value REAL,
    timestamp INTEGER NOT NULL,
    received_at REAL NOT NULL,
    bundle_version TEXT,
    client TEXT,
    user_known INTEGER,
    item_known INTEGER
)
"""
# Columns added after the first release of the log: opened logs without them get them (NULL in old rows).
ADDED_COLUMNS = {"client": "TEXT", "user_known": "INTEGER", "item_known": "INTEGER"}
_BATCH_LIMIT = 512  # requests folded into one transaction at most


class FeedbackError(Exception):
    """The event log cannot be opened or written (a bad path, a read-only disk)."""


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    kind: str
    value: float | None
    timestamp: int
    client: str | None = None  # the address it was posted from
    user_known: bool | None = None  # did the served bundle know the user / the item
    item_known: bool | None = None


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


class FeedbackLog:
    """Append-only event log; `append` is thread-safe and never blocks on the disk."""

    def __init__(self, path: Path | str, synchronous: str = "FULL"):
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise FeedbackError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = _connect(self.path, synchronous)
            self._connection.execute(SCHEMA)
            present = {row[1] for row in self._connection.execute("PRAGMA table_info(events)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in present:
                    self._connection.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
        except (OSError, sqlite3.Error) as error:
            raise FeedbackError(f"feedback log {self.path}: cannot open ({error})") from None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self._writer.start()

    def append(self, events: Sequence[Event], bundle_version: str | None = None) -> Future:
        """Queue events; the future's result is their row ids once committed (or the write's error)."""
        future: Future = Future()
        if self._closed:
            future.set_exception(FeedbackError("the feedback log is closed"))
            return future
        self._queue.put((list(events), bundle_version, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH_LIMIT:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._commit(batch)
                    return
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list) -> None:
        received = time.time()
        try:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            results = []
            for events, version, _ in batch:
                ids = []
                for event in events:
                    cursor.execute(
                        "INSERT INTO events (user_id, item_id, kind, value, timestamp, received_at, bundle_version,"
                        " client, user_known, item_known) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (event.user_id, event.item_id, event.kind, event.value, event.timestamp, received, version,
                         event.client, event.user_known, event.item_known))
                    ids.append(cursor.lastrowid)
                results.append(ids)
            cursor.execute("COMMIT")
        except sqlite3.Error as error:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            log.error("feedback log %s: write failed: %s", self.path, error)
            for _, _, future in batch:
                future.set_exception(FeedbackError(f"feedback log write failed: {error}"))
            return
        for (_, _, future), ids in zip(batch, results):
            future.set_result(ids)

    def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(timeout=30)
        self._connection.close()


# ---------------------------------------------------------------------------------------------
# the log as training data
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportCounts:
    written: int
    skipped: dict[str, int]  # events left out, by kind (other kinds) or reason ("unknown item")
    dropped_clients: dict[str, int] = field(default_factory=dict)  # client address -> events dropped
    dropped_users: dict[str, int] = field(default_factory=dict)  # user id -> events dropped (beyond its client's)


def _over_rate(reader: sqlite3.Connection, column: str, per_hour: int | None) -> set[str]:
    """Values of `column` with more than `per_hour` events in one clock hour of arrival (received_at:
    the server's clock, which a client cannot set)."""
    if per_hour is None:
        return set()
    rows = reader.execute(f"SELECT {column} FROM events WHERE {column} IS NOT NULL "
                          f"GROUP BY {column}, CAST(received_at / 3600 AS INTEGER) HAVING COUNT(*) > ?", (per_hour,))
    return {row[0] for row in rows}


def export_feedback(db: Path | str, out: Path | str, target: str = "implicit", positive_rating: float = 4.0,
                    kinds: Sequence[str] = KINDS, keep_unknown_items: bool = False,
                    max_client_events_per_hour: int | None = None,
                    max_user_events_per_hour: int | None = None) -> ExportCounts:
    """Write the event log as a CSV table that `recsys.data.formats.load(out, format="table")` reads.

    target "implicit": columns user,item,timestamp,label; click and purchase are label 1, skip is
    label 0, a rating is label 1 when its value >= `positive_rating` and 0 otherwise.
    target "rating": columns user,item,timestamp,rating from rating events only.
    Events left out (other kinds, or kinds not in `kinds`) are counted, logged and returned.
    Events the server stored flagged as naming an unknown item are left out unless `keep_unknown_items`.
    A client address (user id) with more than `max_client_events_per_hour` (`max_user_events_per_hour`)
    events in any one hour of arrival has all its events dropped; the dropped ones are returned by name.
    Rows keep the log's order (by id, i.e. by arrival).
    """
    if target not in ("implicit", "rating"):
        raise FeedbackError(f"target must be 'implicit' or 'rating', got {target!r}")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise FeedbackError(f"unknown event kinds {unknown}; known: {', '.join(KINDS)}")
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise FeedbackError(f"feedback log {db} does not exist")
    for name, limit in (("max_client_events_per_hour", max_client_events_per_hour),
                        ("max_user_events_per_hour", max_user_events_per_hour)):
        if limit is not None and limit < 1:
            raise FeedbackError(f"{name} must be >= 1, got {limit}")
    try:
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
        present = {row[1] for row in reader.execute("PRAGMA table_info(events)")}
        extra = ", ".join(column if column in present else "NULL" for column in ADDED_COLUMNS)
        noisy_clients = _over_rate(reader, "client", max_client_events_per_hour) if "client" in present else set()
        noisy_users = _over_rate(reader, "user_id", max_user_events_per_hour)
        rows = reader.execute(f"SELECT user_id, item_id, kind, value, timestamp, {extra} FROM events ORDER BY id")
    except sqlite3.Error as error:
        raise FeedbackError(f"feedback log {db}: cannot read ({error})") from None
    skipped: dict[str, int] = {}
    dropped_clients: dict[str, int] = {}
    dropped_users: dict[str, int] = {}
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "timestamp", "label" if target == "implicit" else "rating"])
        for user, item, kind, value, timestamp, client, _, item_known in rows:
            if client in noisy_clients:
                dropped_clients[client] = dropped_clients.get(client, 0) + 1
                continue
            if user in noisy_users:
                dropped_users[user] = dropped_users.get(user, 0) + 1
                continue
            if item_known == 0 and not keep_unknown_items:
                skipped["unknown item"] = skipped.get("unknown item", 0) + 1
                continue
            if kind not in kinds or (target == "rating" and kind != "rating"):
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            if target == "rating":
                outcome: float | int = value
            elif kind == "rating":
                outcome = int(value is not None and math.isfinite(value) and value >= positive_rating)
            else:
                outcome = 0 if kind == "skip" else 1
            writer.writerow([user, item, timestamp, outcome])
            written += 1
    reader.close()
    partial.replace(out)
    if skipped:
        log.warning("export-feedback: left out %d events (%s) for target %r",
                    sum(skipped.values()), ", ".join(f"{k}: {n}" for k, n in sorted(skipped.items())), target)
    for what, dropped, limit in (("clients", dropped_clients, max_client_events_per_hour),
                                 ("users", dropped_users, max_user_events_per_hour)):
        if dropped:
            log.warning("export-feedback: dropped %d events of %d %s over %d events/hour", sum(dropped.values()),
                        len(dropped), what, limit)
    log.info("export-feedback: wrote %d rows to %s", written, out)
    return ExportCounts(written, skipped, dropped_clients, dropped_users)
