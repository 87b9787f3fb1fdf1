"""Dynamic batching: one inference thread per model; concurrent embedding requests are
gathered, up to a token budget and a short wait, into one batch and answered one by one.

The engine's results do not depend on which sequences share a batch (packed sequences,
per-sequence attention, kernels bit-identical at any batch size), so a text's vector is
bit-identical to ``model.embed([text])`` whatever else was gathered with it
(tests/test_server_batching.py). Other work (classification, reranking) runs on the same
thread one request at a time, so a model is only ever used by its own thread.

The queue is bounded (``Overloaded`` past ``max_queue``); a job whose client went away
or timed out before its turn is dropped, not run.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Callable

import numpy as np


class Overloaded(Exception):
    """The model's queue is full."""


class Closed(Exception):
    """The server is shutting down."""


class Job:
    __slots__ = ("encoded", "fn", "tokens", "future", "loop", "enqueued", "cancelled")

    def __init__(self, loop, encoded=None, fn=None):
        self.encoded, self.fn, self.loop = encoded, fn, loop
        self.tokens = sum(len(ids) for ids, _ in encoded) if encoded is not None else 0
        self.future = loop.create_future()
        self.enqueued = time.perf_counter()
        self.cancelled = False

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        def settle():
            if not self.future.done():
                (self.future.set_exception(error) if error is not None else self.future.set_result(result))
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass


class Batcher:
    """``await batcher.embed(encoded)`` -> (n, dim) float32; ``await batcher.call(fn)`` -> fn()."""

    def __init__(self, name: str, embed: Callable[[list], np.ndarray], limits, metrics):
        self.name, self._embed, self.limits, self.metrics = name, embed, limits, metrics
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"edgebert-serve-{name}", daemon=True)
        self._thread.start()

    async def embed(self, encoded: list) -> np.ndarray:
        return await self._wait(Job(asyncio.get_running_loop(), encoded=encoded))

    async def call(self, fn: Callable):
        return await self._wait(Job(asyncio.get_running_loop(), fn=fn))

    async def _wait(self, job: Job):
        with self._cond:
            if self._closed:
                raise Closed(f"model {self.name} is shutting down")
            if len(self._queue) >= self.limits.max_queue:
                raise Overloaded(f"model {self.name} has {len(self._queue)} requests waiting "
                                 f"(the limit, --max-queue)")
            self._queue.append(job)
            self.metrics.queued.labels(self.name).set(len(self._queue))
            self._cond.notify()
        try:
            return await job.future
        except asyncio.CancelledError:  # client gone or timed out: drop the job if it has not started
            job.cancelled = True
            with self._cond:
                if job in self._queue:  # still waiting: it leaves the queue now, freeing its place
                    self._queue.remove(job)
                    self.metrics.dropped.labels(self.name).inc()
                    self.metrics.queued.labels(self.name).set(len(self._queue))
            raise

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued work, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # ---- the inference thread ---------------------------------------------------------
    def _loop(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if jobs:
                self._run(jobs)

    def _take(self) -> list[Job] | None:
        """The next batch: one call job, or embedding jobs up to the token budget (waiting up to
        batch_wait_ms for more while the budget is not full). None once closed and empty."""
        limits = self.limits
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()  # blocks: an idle server uses no CPU
            jobs = [self._queue.popleft()]
            if jobs[0].fn is None:
                tokens = jobs[0].tokens
                deadline = time.perf_counter() + limits.batch_wait_ms / 1000
                while tokens < limits.max_batch_tokens:
                    nxt = self._queue[0] if self._queue else None
                    if nxt is not None:
                        if nxt.fn is not None or tokens + nxt.tokens > limits.max_batch_tokens:
                            break
                        jobs.append(self._queue.popleft())
                        tokens += nxt.tokens
                        continue
                    left = deadline - time.perf_counter()
                    if left <= 0 or self._closed:
                        break
                    self._cond.wait(left)
            self.metrics.queued.labels(self.name).set(len(self._queue))
        live = [j for j in jobs if not j.cancelled]
        if len(live) < len(jobs):
            self.metrics.dropped.labels(self.name).inc(len(jobs) - len(live))
        return live

    def _run(self, jobs: list[Job]) -> None:
        start = time.perf_counter()
        for job in jobs:
            self.metrics.queue_seconds.labels(self.name).observe(start - job.enqueued)
        try:
            if jobs[0].fn is not None:
                results = [jobs[0].fn()]
            else:
                encoded = [seq for job in jobs for seq in job.encoded]
                vectors = self._embed(encoded)
                m = self.metrics
                m.batch_requests.labels(self.name).observe(len(jobs))
                m.batch_sequences.labels(self.name).observe(len(encoded))
                m.batch_tokens.labels(self.name).observe(sum(j.tokens for j in jobs))
                m.tokens.labels(self.name).inc(sum(j.tokens for j in jobs))
                bounds = np.cumsum([0] + [len(j.encoded) for j in jobs])
                results = [vectors[bounds[i]:bounds[i + 1]] for i in range(len(jobs))]
        except Exception as error:  # noqa: BLE001 - the thread lives on whatever a request did
            if len(jobs) == 1:
                jobs[0].resolve(error=error)
            else:  # one request's failure must not fail the others gathered with it
                for job in jobs:
                    self._run([job])
            return
        finally:
            self.metrics.inference_seconds.labels(self.name).observe(time.perf_counter() - start)
        for job, result in zip(jobs, results):
            job.resolve(result)
