"""``edgebert serve`` as a process: loopback by default, idle without CPU, drains on SIGTERM,
exits non-zero when a model cannot load."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from benchmarks.serve_load import ServerProcess, idle_cpu_s  # noqa: E402

# Idle, the process only wakes for uvicorn's once-a-second date refresh; a polling loop or
# spinning kernel threads would use tenths of a second per second.
IDLE_CPU_LIMIT_S = 0.05
IDLE_WINDOW_S = 2.0
HOLD_S = 1.5  # how long the drained request is held in the server


def test_idle_without_cpu_then_sigterm_answers_the_request_in_flight(tiny_int8):
    """One server process for both (each start costs seconds): loopback by default; idle, it
    uses no CPU; SIGTERM stops it only after the request in flight is answered, and it exits 0."""
    import edgebert

    texts = ["in flight", "when the signal comes"]
    # an idle model waits --batch-wait-ms for more requests: the first one is in flight that long
    server = ServerProcess(str(tiny_int8), "--threads", "1", "--batch-wait-ms", str(HOLD_S * 1000))
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.post(server.url + "/embed", json={"inputs": ["warm", "up"]}).status_code == 200
        time.sleep(0.5)  # the kernel threads' brief spin after a call (GOMP_SPINCOUNT) ends
        used = idle_cpu_s(server, IDLE_WINDOW_S)
        assert used < IDLE_CPU_LIMIT_S, f"idle server used {used:.3f} s of CPU in {IDLE_WINDOW_S} s"
    except BaseException:
        server.stop()
        raise
    answer = {}

    def request():
        answer["r"] = httpx.post(server.url + "/embed", json={"inputs": texts, "normalize": False}, timeout=60)

    client = threading.Thread(target=request)
    start = time.monotonic()
    client.start()
    time.sleep(HOLD_S / 3)
    assert "r" not in answer
    code = server.stop()  # SIGTERM
    client.join(60)
    assert time.monotonic() - start >= HOLD_S  # it was answered after the signal, not before
    assert answer["r"].status_code == 200
    np.testing.assert_array_equal(np.array(answer["r"].json(), dtype=np.float32),
                                  edgebert.load(tiny_int8).embed(texts))
    assert code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")


def test_a_model_that_cannot_load_stops_the_server(tmp_path):
    bad = tmp_path / "bad.edgebert"
    bad.write_bytes(b"not a model file at all")
    proc = subprocess.run([sys.executable, "-m", "edgebert.cli", "serve", str(bad), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "loopback only" in proc.stderr and "cannot load the models" in proc.stderr and "bad.edgebert" in proc.stderr


def test_bad_command_lines_are_refused(tmp_path, tiny_int8):
    from edgebert.cli import main

    assert main(["serve", str(tmp_path / "missing.edgebert")]) == 2
    assert main(["serve", f"default={tiny_int8}"]) == 2
    assert main(["serve", f"a={tiny_int8}", f"a={tiny_int8}"]) == 2
    assert main(["serve", str(tiny_int8), "--max-queue", "0"]) == 2
