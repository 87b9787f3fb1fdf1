"""Dynamic batching: the batcher's gathering, dropping, bounding and isolation (with a fake model),
then a real server under concurrent clients: every answer bit-identical to ``model.embed``."""
from __future__ import annotations

import asyncio
import random
import threading

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from edgebert.server.batching import Batcher, Closed, Overloaded  # noqa: E402
from edgebert.server.config import Limits  # noqa: E402
from edgebert.server.metrics import Metrics  # noqa: E402

POISON = -1  # a token id that makes the fake model fail
WAIT_S = 10  # bound on every wait in these tests (they finish in milliseconds)


class FakeModel:
    """(ids, types) sequences -> one row per sequence holding its first id; records each batch."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __call__(self, encoded):
        if any(POISON in ids for ids, _ in encoded):
            raise ValueError("poisoned sequence")
        self.batches.append([ids[0] for ids, _ in encoded])
        return np.array([[ids[0]] for ids, _ in encoded], dtype=np.float32)


def seqs(first: int, n: int, tokens: int = 10) -> list:
    return [([first + i] * tokens, [0] * tokens) for i in range(n)]


async def hold(batcher: Batcher) -> tuple[threading.Event, asyncio.Future]:
    """Keep the model's thread busy until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def block():
        started.set()
        release.wait(WAIT_S)
    task = asyncio.ensure_future(batcher.call(block))
    await asyncio.to_thread(started.wait, WAIT_S)
    return release, task


def run(coro_fn, **limits):
    model, metrics = FakeModel(), Metrics()
    batcher = Batcher("m", model, Limits(**limits), metrics)
    try:
        return asyncio.run(asyncio.wait_for(coro_fn(batcher, model, metrics), WAIT_S))
    finally:
        batcher.close(WAIT_S)


def test_waiting_requests_are_gathered_up_to_the_token_budget():
    async def body(batcher, model, metrics):
        release, blocker = await hold(batcher)
        jobs = [asyncio.ensure_future(batcher.embed(seqs(100 * k, 2))) for k in range(5)]  # 20 tokens each
        await asyncio.sleep(0.05)  # all five queued behind the blocker
        release.set()
        results = await asyncio.gather(*jobs)
        await blocker
        for k, rows in enumerate(results):  # each request gets its own rows, in order
            assert rows[:, 0].tolist() == [100 * k, 100 * k + 1]
        return model.batches
    batches = run(body, max_batch_tokens=45, batch_wait_ms=0)
    assert [len(b) for b in batches] == [4, 4, 2]  # two requests (40 tokens) fit in 45, a third does not


def test_an_idle_model_waits_briefly_for_more():
    async def body(batcher, model, metrics):
        first = asyncio.ensure_future(batcher.embed(seqs(0, 1)))
        await asyncio.sleep(0.02)  # well inside the 500 ms wait
        second = asyncio.ensure_future(batcher.embed(seqs(1, 1)))
        await asyncio.gather(first, second)
        return model.batches
    assert run(body, batch_wait_ms=500, max_batch_tokens=20) == [[0, 1]]  # full budget: no waiting longer


def test_a_cancelled_request_is_dropped_not_run():
    async def body(batcher, model, metrics):
        release, blocker = await hold(batcher)
        gone = asyncio.ensure_future(batcher.embed(seqs(7, 1)))
        kept = asyncio.ensure_future(batcher.embed(seqs(8, 1)))
        await asyncio.sleep(0.02)
        gone.cancel()  # the client disconnected or timed out
        await asyncio.sleep(0.02)
        release.set()
        await kept
        await blocker
        return model.batches, metrics.registry.get_sample_value("edgebert_dropped_requests_total", {"model": "m"})
    batches, dropped = run(body, batch_wait_ms=0)
    assert batches == [[8]] and dropped == 1


def test_a_full_queue_refuses_and_a_closed_batcher_too():
    async def body(batcher, model, metrics):
        release, blocker = await hold(batcher)
        queued = [asyncio.ensure_future(batcher.embed(seqs(k, 1))) for k in range(2)]
        await asyncio.sleep(0.02)
        with pytest.raises(Overloaded, match="2 requests waiting"):
            await batcher.embed(seqs(9, 1))
        release.set()
        await asyncio.gather(blocker, *queued)
        await asyncio.to_thread(batcher.close, WAIT_S)
        with pytest.raises(Closed):
            await batcher.embed(seqs(9, 1))
    run(body, max_queue=2, batch_wait_ms=0)


def test_one_failing_request_does_not_fail_those_gathered_with_it():
    async def body(batcher, model, metrics):
        release, blocker = await hold(batcher)
        good = asyncio.ensure_future(batcher.embed(seqs(1, 2)))
        bad = asyncio.ensure_future(batcher.embed([([POISON], [0])]))
        also_good = asyncio.ensure_future(batcher.embed(seqs(5, 1)))
        await asyncio.sleep(0.02)
        release.set()
        await blocker
        assert (await good)[:, 0].tolist() == [1, 2] and (await also_good)[:, 0].tolist() == [5]
        with pytest.raises(ValueError, match="poisoned"):
            await bad
    run(body, batch_wait_ms=0)


# ---- a real server: gathered batches give model.embed's bits ----------------------------------
CLIENTS, REQUESTS_PER_CLIENT = 16, 3


def test_concurrent_requests_are_gathered_and_bit_identical(tiny_int8, pang_lee_texts):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    import edgebert
    from benchmarks.serve_load import run_clients

    from serving import ThreadServer

    rng = random.Random(0)
    texts = pang_lee_texts[:200]
    requests = [rng.sample(texts, rng.randint(1, 8)) for _ in range(CLIENTS * REQUESTS_PER_CLIENT)]
    model = edgebert.load(tiny_int8)
    expected = dict(zip(texts, model.embed(texts)))
    for text in texts[:5]:  # the engine's determinism this relies on: alone or in a batch, the same bits
        np.testing.assert_array_equal(model.embed([text])[0], expected[text])
    with ThreadServer([("tiny", tiny_int8)], Limits(batch_wait_ms=20)) as server:
        report = run_clients(server.url, requests, CLIENTS, expected)
        assert report["errors"] == 0 and report["wrong"] == 0 and report["requests"] == len(requests)
        gathered = server.metric("edgebert_batch_requests_sum", model="tiny")
        batches = server.metric("edgebert_batch_requests_count", model="tiny")
        assert gathered == len(requests) and batches < len(requests)  # some batches held several requests
        assert httpx.get(server.url + "/health").status_code == 200
