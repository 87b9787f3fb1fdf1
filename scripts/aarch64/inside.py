"""Run inside the emulated aarch64 root (scripts/aarch64/run_tests.sh): check the kernel path this
CPU gets, embed texts with a model file converted on x86 and compare with the x86 embeddings.

    python inside.py --expect-path neon_dot --model m.edgebert --texts texts.txt --reference x86.npy --out a.npy

Prints one JSON line (path, hwcaps, LLVM's CPU name, timings, agreement) and exits 1 on a failed check.
"""
import argparse
import json
import platform
import sys
import time

import numpy as np

# The embeddings must agree at least this well with x86's (issue 15's floor). The run reports
# whether they are bit-identical: the int8 kernels are (exact int32, the same float32 steps), but
# NumPy's SIMD reductions and libm are not promised to round alike on two architectures.
MIN_COSINE = 0.9999
# ... and no entry of the unit-norm embeddings may differ by more than this: a few float32 ulps
# of values below 1 (measured under emulated Cortex-A76: 3.0e-8, 33 of 48 rows bit-identical).
MAX_ABS_DIFF = 1e-6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect-path", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import llvmlite.binding as llb

    import edgebert
    from edgebert.runtime.kernels import cpu

    report = {"machine": platform.machine(), "llvm_cpu": llb.get_host_cpu_name(),
              "hwcap": hex(cpu.auxv_hwcaps()[0]), "features": sorted(cpu.host_features() & set(cpu.ARM64_HWCAPS)),
              "detected_path": cpu.detected_path(), "kernel_path": cpu.kernel_path()}
    ok = report["detected_path"] == args.expect_path == report["kernel_path"]

    texts = [t for t in open(args.texts, encoding="utf-8").read().split("\n") if t]
    t0 = time.perf_counter()
    model = edgebert.load(args.model, threads=2)
    report["load_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    model.embed(texts[:2])  # compiles the kernels (or loads them from Numba's cache)
    report["first_embed_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    vectors = model.embed(texts)
    report["embed_s"] = round(time.perf_counter() - t0, 2)
    np.save(args.out, vectors)

    ref = np.load(args.reference)
    if ref.shape != vectors.shape:
        report["error"] = f"shape {vectors.shape} vs x86 {ref.shape}"
        ok = False
    else:
        cos = np.sum(vectors.astype(np.float64) * ref, 1) / (
            np.linalg.norm(vectors.astype(np.float64), axis=1) * np.linalg.norm(ref.astype(np.float64), axis=1))
        report.update(texts=len(texts), bit_identical=bool(np.array_equal(vectors, ref)),
                      identical_rows=int(np.sum(np.all(vectors == ref, axis=1))),
                      max_abs_diff=float(np.max(np.abs(vectors - ref))), min_cosine=float(cos.min()))
        ok = ok and report["min_cosine"] >= MIN_COSINE and report["max_abs_diff"] <= MAX_ABS_DIFF
    report["ok"] = ok
    print(json.dumps(report), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
