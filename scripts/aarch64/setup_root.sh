#!/usr/bin/env bash
# Build (once) an arm64 Debian root with Python and edgebert's runtime dependencies, for
# running the aarch64 tests under QEMU user-mode emulation (scripts/aarch64/run_tests.sh).
#
#   scripts/aarch64/setup_root.sh [ROOT]     # default $EDGEBERT_AARCH64_ROOT or /var/cache/edgebert/aarch64-root
#
# Needs root and a Debian/Ubuntu host with apt (installs qemu-user-static and debootstrap) and
# a pip on the host ($PIP, default "python3 -m pip"). Two cached layers, each rebuilt only when
# its recipe changes: the Debian base (debootstrap, python3; ROOT/.edgebert-base) and the
# aarch64 wheels (ROOT/opt/edgebert-deps; ROOT/.edgebert-wheels). The wheels are installed by
# the host's pip for the aarch64 platform (--platform/--target): pip under emulation took
# minutes to resolve and byte-compile them. Network is needed only here, never by the tests.
set -euo pipefail
ROOT=${1:-${EDGEBERT_AARCH64_ROOT:-/var/cache/edgebert/aarch64-root}}
PIP=${PIP:-python3 -m pip}
SUITE=bookworm  # Python 3.11, like Raspberry Pi OS 12 (bookworm)
INCLUDE=python3,ca-certificates
# The aarch64 wheels the tests run on: the versions this project is developed with.
PIP_PACKAGES="numpy==2.4.6 numba==0.68.1 llvmlite==0.50.0 tokenizers==0.22.2 safetensors==0.8.0 pytest==8.3.5"
BASE_KEY="$SUITE $INCLUDE"
WHEELS_KEY="cp311 $PIP_PACKAGES"

log() { echo "[aarch64-root $(date +%H:%M:%S)] $*" >&2; }

if [ "$(id -u)" != 0 ]; then echo "setup_root.sh: needs root (debootstrap, binfmt_misc)" >&2; exit 2; fi

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || { echo "setup_root.sh: needs apt-get to install qemu-user-static and debootstrap" >&2; exit 2; }
    log "installing qemu-user-static and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null
fi

# binfmt_misc: qemu-user-static's package registers qemu-aarch64 (with the F flag, so
# it works inside the chroot) once binfmt_misc is mounted.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    if command -v update-binfmts >/dev/null; then update-binfmts --enable qemu-aarch64 || true; fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        # the registration qemu-user-static's package ships (magic of an aarch64 ELF executable)
        echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            > /proc/sys/fs/binfmt_misc/register
    fi
fi

if [ ! -f "$ROOT/.edgebert-base" ] || [ "$(cat "$ROOT/.edgebert-base")" != "$BASE_KEY" ]; then
    # The host's Debian mirror (its active apt sources), else Debian's own.
    MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
             | sed -nE 's@^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^ ]+/debian)/?([[:space:]].*)?$@\3@p' | head -1 || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    log "debootstrap $SUITE arm64 ($INCLUDE) from $MIRROR into $ROOT"
    rm -rf "$ROOT.tmp" "$ROOT"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT.tmp" "$MIRROR" \
        >"$(dirname "$ROOT")/debootstrap.log" 2>&1 || { tail -20 "$(dirname "$ROOT")/debootstrap.log" >&2; exit 1; }
    rm -rf "$ROOT.tmp/var/cache/apt/archives"/*.deb
    echo "$BASE_KEY" > "$ROOT.tmp/.edgebert-base"
    mv "$ROOT.tmp" "$ROOT"
fi

if [ ! -f "$ROOT/.edgebert-wheels" ] || [ "$(cat "$ROOT/.edgebert-wheels")" != "$WHEELS_KEY" ]; then
    log "installing aarch64 wheels with the host's pip: $PIP_PACKAGES"
    rm -rf "$ROOT/opt/edgebert-deps" "$ROOT/.edgebert-wheels"
    $PIP install -q --no-compile --disable-pip-version-check --only-binary=:all: --implementation cp \
        --python-version 3.11 --abi cp311 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux_2_28_aarch64 --target "$ROOT/opt/edgebert-deps" $PIP_PACKAGES 2>&1 \
        | grep -v -e "^WARNING: Location" -e "dependency resolver" -e " requires .*, but you have " >&2 || true
    python3 - "$ROOT/opt/edgebert-deps" <<'EOF'
import sys, pathlib
missing = [p for p in ("numpy", "numba", "llvmlite", "tokenizers", "safetensors", "pytest")
           if not (pathlib.Path(sys.argv[1]) / p).is_dir()]
sys.exit(f"setup_root.sh: the aarch64 wheels were not installed: {missing}" if missing else 0)
EOF
    echo "$WHEELS_KEY" > "$ROOT/.edgebert-wheels"
fi
log "root ready: $ROOT"
