"""The server's limits and batching settings, in one place (each is a ``serve`` flag)."""
from __future__ import annotations

import os
from dataclasses import dataclass

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 2**20  # a request body over this gets 413
    max_inputs: int = 512  # texts per request (413 above)
    max_request_tokens: int = 65_536  # tokens per request, after truncation (413 above)
    max_batch_tokens: int = 16_384  # concurrent requests are gathered up to this many tokens
    batch_wait_ms: float = 2.0  # how long an idle model waits for more requests to gather
    max_queue: int = 128  # requests waiting per model; more get 429 with Retry-After
    timeout_s: float = 60.0  # a request not answered by then gets 503 (its queued work is dropped)
    read_timeout_s: float = 10.0  # a body not received by then gets 408
    batch_size: int = 32  # sequences per forward pass inside a gathered batch (as model.embed)


def default_threads() -> int:
    """Kernel threads when --threads is not given: $EDGEBERT_NUM_THREADS, else every core but
    one (at least one), so the desktop app that calls us keeps a core for its own UI: on the
    2- and 4-core machines a server shares with its app, all cores would make every request
    compete with the app; on many cores one core fewer costs little throughput."""
    from ..settings import THREADS_ENV, resolve_threads

    if os.environ.get(THREADS_ENV, "").strip():
        return resolve_threads(None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return resolve_threads(max(1, cores - 1))
