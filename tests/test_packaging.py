"""A wheel built from the repo installs and imports from outside the repo, under one root."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_imports_outside_repo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("edgebert-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.startswith("edgebert-")}
    assert roots == {"edgebert"}, f"wheel must have one import root, has {roots}"
    assert "edgebert/runtime/kernels/gemm.py" in names and "edgebert/converters/pipeline.py" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, cwd=tmp_path)
    code = ("import edgebert, edgebert.converters, edgebert.runtime.executor, edgebert.cli; "
            "print(edgebert.__file__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().startswith(str(site))
