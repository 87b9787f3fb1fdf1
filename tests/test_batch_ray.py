"""Runs tests/ray_cases.py on a local Ray inside a private network namespace.

Ray 2.60's servers (GCS, raylet, workers) listen on every interface even with
node_ip_address=127.0.0.1; in a namespace of its own only loopback exists, so the
cluster cannot be reached from outside this machine. Needs root (CI runs as root).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is the [ray] extra (installed by the test extra)")
CASES = Path(__file__).with_name("ray_cases.py")
EXPECTED = 3


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="a private network namespace needs root, unshare and ip")
def test_ray_cases_in_a_loopback_only_namespace():
    inner = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider {CASES}"
    run = subprocess.run(["unshare", "--net", "bash", "-c", inner], capture_output=True, text=True,
                         timeout=1800, cwd=CASES.parent.parent)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert f"{EXPECTED} passed" in run.stdout, run.stdout[-2000:]
