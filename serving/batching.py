"""Micro-batching of concurrent recommendation queries: one worker thread answers them a batch at a time.

The event loop hands each query to `RecommendBatcher.recommend` and awaits its answer; the worker
thread takes whatever is queued (up to `max_size`) and answers it with one
`Retriever.recommend_many` call, so a flat index reads the item matrix once for the whole batch.

When to wait for more: the worker takes everything already queued, then waits (at most `window_s`
after the batch's first query) only until the batch is as large as the largest of the recent
batches: under steady concurrent load the clients whose answers just went out are about to ask
again, while a lone client (recent batches of one) never waits.

The thread is started on first use and ends after a few idle seconds (an app under test may never
run its lifespan); `close` ends it at shutdown. Every query gets its own answer or its own
exception: a failing query fails nobody else.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import faiss

from serving.retrieval import Query, Ranking, Retriever

log = logging.getLogger(__name__)

_IDLE_EXIT_S = 5.0
_RECENT_BATCHES = 16
_DEFER_ITERATIONS = 2


@dataclass
class _Pending:
    retriever: Retriever  # the bundle the request saw; a reload mid-batch does not change its answer
    query: Query
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class RecommendBatcher:
    """Answers queries from one worker thread, several at a time."""

    def __init__(self, max_size: int, window_s: float, max_excluded: int, min_shared: int, threads: int = 1,
                 observe_batch: Callable[[int], None] = lambda size: None):
        self.max_size = max_size
        self.threads = threads
        self.window_s = window_s
        self.max_excluded = max_excluded
        self.min_shared = min_shared
        self.observe_batch = observe_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._recent_sizes: deque[int] = deque(maxlen=_RECENT_BATCHES)

    async def recommend(self, retriever: Retriever, query: Query) -> Ranking:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Pending(retriever, query, future, loop))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recommend-batcher", daemon=True)
                self._thread.start()
        return await future

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued queries, then end the thread."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    # the worker thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        # OpenMP's thread count is per thread: a new thread starts at one per core, whatever the main thread
        # set, and idle OpenMP workers spin on the cores the server shares.
        faiss.omp_set_num_threads(self.threads)
        while True:
            try:
                first = self._queue.get(timeout=_IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:  # a query put before this check keeps the thread; one put after starts a new one
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if first is None:
                with self._lock:
                    self._thread = None
                return
            batch, stop = self._gather(first)
            self._answer(batch)
            if stop:
                with self._lock:
                    self._thread = None
                return

    def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The first query plus what is queued, waiting within the window for as many as recent batches held."""
        batch = [first]
        deadline = time.perf_counter() + self.window_s
        target = min(self.max_size, max(self._recent_sizes, default=1))
        while len(batch) < self.max_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or len(batch) >= target:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        self._recent_sizes.append(len(batch))
        return batch, False

    def _answer(self, batch: list[_Pending]) -> None:
        self.observe_batch(len(batch))
        results = answer_batch(batch, self.max_excluded, self.min_shared)
        by_loop: dict[int, list[tuple[asyncio.Future, Ranking | Exception]]] = {}
        for pending, result in zip(batch, results):
            by_loop.setdefault(id(pending.loop), []).append((pending.future, result))
        for pending in {id(p.loop): p for p in batch}.values():  # one wake-up of each event loop per batch
            pending.loop.call_soon_threadsafe(_settle_all, by_loop[id(pending.loop)])


class LoopBatcher:
    """Micro-batches on the event loop itself, with no thread: the first query schedules a callback a few
    loop iterations later, and every query that arrived by then (the requests the loop read while it was
    busy with the previous batch) is answered with it. A lone query waits only those iterations
    (microseconds); the scan then runs on the loop, as it does without batching."""

    def __init__(self, max_size: int, max_excluded: int, min_shared: int,
                 observe_batch: Callable[[int], None] = lambda size: None):
        self.max_size = max_size
        self.max_excluded = max_excluded
        self.min_shared = min_shared
        self.observe_batch = observe_batch
        self._pending: list[_Pending] = []
        self._scheduled = False

    async def recommend(self, retriever: Retriever, query: Query) -> Ranking:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Pending(retriever, query, future, loop))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop, _DEFER_ITERATIONS)
        return await future

    def close(self) -> None:
        """Nothing to stop: queries are answered on the loop."""

    def _flush(self, loop: asyncio.AbstractEventLoop, iterations_left: int) -> None:
        if iterations_left > 0:  # let the loop read and parse the requests already waiting on its sockets
            loop.call_soon(self._flush, loop, iterations_left - 1)
            return
        batch, self._pending = self._pending[:self.max_size], self._pending[self.max_size:]
        self._scheduled = bool(self._pending)
        if self._pending:
            loop.call_soon(self._flush, loop, 0)
        self.observe_batch(len(batch))
        _settle_all(list(zip((p.future for p in batch), answer_batch(batch, self.max_excluded, self.min_shared))))


def answer_batch(batch: list[_Pending], max_excluded: int, min_shared: int) -> list[Ranking | Exception]:
    """Each query's answer or exception, in order; queries of one bundle go to one `recommend_many`."""
    results: list[Ranking | Exception | None] = [None] * len(batch)
    by_retriever: dict[int, list[int]] = {}
    for position, pending in enumerate(batch):
        by_retriever.setdefault(id(pending.retriever), []).append(position)
    for positions in by_retriever.values():
        retriever = batch[positions[0]].retriever
        try:
            answers = retriever.recommend_many([batch[p].query for p in positions], max_excluded, min_shared)
        except Exception as error:  # noqa: BLE001 - recommend_many keeps errors per query; this is a bug
            log.exception("a batch of %d queries failed", len(positions))
            answers = [error] * len(positions)
        for position, answer in zip(positions, answers):
            results[position] = answer
    return results


def _settle_all(pairs: list[tuple[asyncio.Future, Ranking | Exception]]) -> None:
    for future, result in pairs:
        if future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
