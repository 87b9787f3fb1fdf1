"""Every bad request the server must refuse, with its status and a message naming what is wrong;
overload, time-outs and disconnects; and the server healthy and correct afterwards."""
from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import edgebert  # noqa: E402
from edgebert.server.config import Limits  # noqa: E402

from serving import ThreadServer  # noqa: E402

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = Limits(max_body_bytes=4096, max_inputs=4, max_request_tokens=40, max_queue=1, timeout_s=1.0,
                read_timeout_s=0.5, batch_wait_ms=0)
WAIT_S = 10  # bound on every wait (each step takes milliseconds)


@pytest.fixture(scope="module")
def server(tiny_int8):
    with ThreadServer([("tiny", tiny_int8)], LIMITS, api_key=KEY) as s:
        yield s


def post(server, route, content, headers=AUTH, **kw):
    if not isinstance(content, (bytes, str)) and not callable(content):
        content = json.dumps(content)
    return httpx.post(server.url + route, content=content() if callable(content) else content, headers=headers,
                      timeout=WAIT_S, **kw)


def chunks():  # a body without Content-Length, larger than the limit
    for _ in range(10):
        yield b"x" * 1000


BAD = [  # route, body, status, words the message must contain
    ("/embed", b"x" * 5000, 413, "--max-body-bytes"),
    ("/embed", chunks, 413, "--max-body-bytes"),
    ("/embed", {"inputs": ["a"] * 5}, 413, "--max-inputs"),
    ("/embed", {"inputs": ["word " * 30, "word " * 30]}, 413, "--max-request-tokens"),
    ("/embed", b'{"inputs": [', 422, "not valid JSON"),
    ("/embed", b"", 422, "empty"),
    ("/embed", b"[" * 2000 + b"]" * 2000, 422, "nested too deeply"),
    ("/embed", ["a"], 422, "must be a JSON object"),
    ("/embed", {"inputs": 5}, 422, "inputs"),
    ("/embed", {"inputs": []}, 422, "non-empty"),
    ("/embed", {"inputs": "a", "normalize": "yes"}, 422, "normalize"),
    ("/embed", {"inputs": "a", "colour": 1}, 422, "'colour'"),
    ("/embed", {"normalize": True}, 422, "'inputs' is required"),
    ("/embed", b'{"inputs": "caf\xe9"}', 400, "UTF-8"),
    ("/embed", b'{"inputs": "\\ud800"}', 422, "surrogate"),
    ("/embed", {"inputs": "word " * 200, "truncate": False}, 422, "maximum"),
    ("/embed", {"inputs": "a", "model": "nope"}, 404, "loaded: tiny"),
    ("/rerank", {"query": "q", "texts": ["a"]}, 400, "reranker"),
    ("/predict", {"inputs": "a", "model": "tiny"}, 400, "not a classifier"),
    ("/tokenize", {"inputs": "a", "add_special_tokens": 1}, 422, "add_special_tokens"),
    ("/v1/embeddings", {"input": "a", "dimensions": 3}, 422, "dimensions=3"),
    ("/v1/embeddings", {"input": [[1, 2]]}, 422, "list of strings"),
    ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, 422, "encoding_format"),
    ("/nowhere", {}, 404, "no such route"),
]


@pytest.mark.parametrize("route,body,status,words", BAD, ids=[f"{r} {s} {w}" for r, _, s, w in BAD])
def test_bad_request_is_refused_by_name(server, route, body, status, words):
    r = post(server, route, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    message = error["message"] if route.startswith("/v1") else error
    assert words in message


def test_api_key_guards_every_route_but_health(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = httpx.post(server.url + "/embed", json={"inputs": "a"}, headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer" and "API key" in r.json()["error"]
        assert httpx.get(server.url + "/metrics", headers=headers).status_code == 401
        assert httpx.get(server.url + "/v1/models", headers=headers).json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/embed", headers=AUTH).status_code == 405


def test_a_body_that_never_arrives_gets_408(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as s:
        s.sendall(f"POST /embed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\":".encode())
        reply = _read_response(s)
    assert reply.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in reply


def _read_response(s: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(4096)
    return (head + b"\r\n\r\n" + body).decode()


def hold_model(server):
    """Block the model's thread (a job on its queue) until the returned event is set."""
    batcher = server.state.registry.models["tiny"].batcher
    started, release = threading.Event(), threading.Event()

    def block():
        started.set()
        release.wait(WAIT_S)
    job = server.submit(batcher.call(block))
    assert started.wait(WAIT_S)
    return batcher, release, job


def test_overload_gets_429_with_retry_after(server):
    batcher, release, job = hold_model(server)
    try:
        queued = server.submit(batcher.call(lambda: "queued"))  # fills the queue (max_queue=1)
        time.sleep(0.05)
        r = post(server, "/embed", {"inputs": "a"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "1" and "--max-queue" in r.json()["error"]
    finally:
        release.set()
    assert job.result(WAIT_S) is None and queued.result(WAIT_S) == "queued"


def test_timed_out_and_abandoned_requests_are_dropped(server):
    dropped = server.metric("edgebert_dropped_requests_total", model="tiny")
    gone = server.metric("edgebert_requests_total", route="/embed", status="499")
    batcher, release, job = hold_model(server)
    try:
        r = post(server, "/embed", {"inputs": "a"})  # waits longer than --timeout 1 s
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "--timeout" in r.json()["error"]
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            httpx.post(server.url + "/embed", json={"inputs": "b"}, headers=AUTH, timeout=0.3)
        deadline = time.monotonic() + WAIT_S
        while server.metric("edgebert_requests_total", route="/embed", status="499") == gone:
            assert time.monotonic() < deadline, "the server did not notice the client leaving"
            time.sleep(0.02)
    finally:
        release.set()
    job.result(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while server.metric("edgebert_dropped_requests_total", model="tiny") < dropped + 2:
        assert time.monotonic() < deadline, "queued work of gone clients was run"
        time.sleep(0.02)


def test_healthy_and_correct_after_all_that(server, tiny_int8):
    texts = ["still fine", "after every bad request"]
    r = post(server, "/embed", {"inputs": texts, "normalize": False})
    np.testing.assert_array_equal(np.array(r.json(), dtype=np.float32), edgebert.load(tiny_int8).embed(texts))
    assert httpx.get(server.url + "/health").json()["status"] == "ready"
    assert server.metric("edgebert_requests_total", route="/embed", status="500") == 0



def test_before_the_models_are_loaded_health_says_so(tiny_int8):
    from starlette.testclient import TestClient

    from edgebert.server.app import create_app

    client = TestClient(create_app([("tiny", tiny_int8)]))  # lifespan not started: nothing loaded yet
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "loading"
    r = client.post("/embed", json={"inputs": "a"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "loading" in r.json()["error"]
