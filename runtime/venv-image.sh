# Sourced by the image scripts of a Python virtual environment on Debian (gateway-image.sh,
# chat-page-image.sh): builds the image without a Docker engine. The wheels are downloaded on this
# machine for the image's platform (Debian bookworm's Python 3.11.2, manylinux x86_64), mmdebstrap
# makes the root filesystem and installs them in one of its hooks, and e2e/cluster/oci_image.py
# writes the OCI image archive. Cached outside the repository:
#
#   ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/<CACHE_NAME>/
#     <CACHE_NAME>-<key>.tar   the image archive; <key> covers the pins, the lock file, the Debian
#                              packages and the commands of the three scripts (the sourcing one,
#                              this one and debian.sh; not their comments)
#     wheels-<key>/            the wheels it installs
#
# The sourcing script calls read_versions (below) for IMAGE, the image's name, and PINS, the pinned
# top-level packages, and sets, from its Dockerfile:
#   CACHE_NAME       directory and archive name under the cache
#   LOCK_FILE        every other package, exactly pinned, installed --no-deps
#   DEBIAN_PACKAGES  its Dockerfile's apt-get line
#   VENV             where the environment goes in the image
#   IMAGE_USER_NAME  the user (uid 1000, gid 0) the image runs as
#   IMAGE_ENV        its Dockerfile's ENV lines; IMAGE_WORKDIR its WORKDIR
#   UNMET_ALLOWED    (optional) a grep -E pattern of the `pip check` lines the lock leaves unmet on
#                    purpose; any other unmet requirement fails the build, so a lock resolved for
#                    another Python (Debian's is 3.11.2) cannot produce an image that fails at import
# and runs it with the script's arguments:  (none) build what is missing, print "image NAME" and
# "archive PATH";  --print  print them, build nothing. Needs root (mmdebstrap), python3 >= 3.11 with pip.

source runtime/debian.sh
IMAGE_USER=1000:0

# Sets IMAGE and PINS from runtime/llm_runtime/versions.py, the one place versions are pinned, and
# the project's version in pyproject.toml:
#   read_versions IMAGE_FUNCTION PACKAGE=VERSIONS_CONSTANT...
# for example `read_versions chat_page_image open-webui=OPEN_WEBUI_VERSION`.
read_versions() {
  eval "$(python3 - "$@" <<'PY'
import shlex, sys, tomllib
sys.path.insert(0, "runtime")
from llm_runtime import versions
image_function, *pins = sys.argv[1:]
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = [f"{package}=={getattr(versions, constant)}" for package, constant in (p.split("=") for p in pins)]
print("PINS=(" + " ".join(shlex.quote(r) for r in requirements) + ")")
print(f"IMAGE={shlex.quote(getattr(versions, image_function)(project['version']))}")
PY
)"
}

build_venv_image() {
  local cache=${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}
  local dir=$cache/$CACHE_NAME key archive wheels
  key=$( { echo "${PINS[*]} ${DEBIAN_PACKAGES[*]} $VENV ${IMAGE_ENV[*]}"; cat "$LOCK_FILE";
           grep -hv '^[[:space:]]*#' "$0" "${BASH_SOURCE[0]}" runtime/debian.sh; } | sha256sum | cut -c1-16)
  archive=$dir/$CACHE_NAME-$key.tar
  wheels=$dir/wheels-$key

  if [[ "${1:-}" == "--print" || -f "$archive" ]]; then
    printf 'image %s\narchive %s\n' "$IMAGE" "$archive"
    return 0
  fi
  [[ $(id -u) == 0 ]] || { echo "$(basename "$0") needs root (mmdebstrap)" >&2; return 1; }
  command -v mmdebstrap >/dev/null || install_host_packages mmdebstrap

  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9  # one builder at a time; a second caller waits, then finds the work done
  [[ -f "$archive" ]] && { printf 'image %s\narchive %s\n' "$IMAGE" "$archive"; return 0; }
  local start=$SECONDS work
  work=$(mktemp -d "$dir/build.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" EXIT

  # Wheels for the image's Python (Debian bookworm's 3.11.2), whatever Python runs this script.
  if [[ ! -d "$wheels" ]]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11.2 --implementation cp --abi cp311 --abi abi3 --abi none \
      --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any \
      --dest "$work/wheels" "${PINS[@]}" -r "$LOCK_FILE"
    mv "$work/wheels" "$wheels"
  fi

  # The steps of the Dockerfile, in mmdebstrap's hooks (it mounts /proc and /dev for them).
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${DEBIAN_PACKAGES[*]}")" "${SLIM[@]}" \
    --customize-hook="copy-in $wheels /tmp" \
    --customize-hook="chroot \"\$1\" python3 -m venv $VENV" \
    --customize-hook="chroot \"\$1\" /bin/sh -c '$VENV/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile /tmp/$(basename "$wheels")/*.whl'" \
    --customize-hook="chroot \"\$1\" /bin/sh -c '$VENV/bin/python $BYTECODE /usr/lib/python3.11 $VENV/lib > /dev/null 2>&1 || true'" \
    --customize-hook="rm -rf \"\$1/tmp/$(basename "$wheels")\"" \
    --customize-hook="chroot \"\$1\" $VENV/bin/pip check --disable-pip-version-check > $work/pip-check.txt || true" \
    --customize-hook="chroot \"\$1\" useradd --uid 1000 --gid 0 --no-create-home --home-dir /tmp $IMAGE_USER_NAME" \
    "$SUITE" "$work/rootfs" "${SOURCES[@]}"
  local unmet
  unmet=$(grep -v -e '^No broken requirements' "$work/pip-check.txt" | grep -Ev "${UNMET_ALLOWED:-^\$}" || true)
  if [[ -n "$unmet" ]]; then
    echo "$LOCK_FILE is incomplete for the image's Python (pip check in the image):" >&2
    echo "$unmet" >&2
    return 1
  fi
  # No host resolver or hostname (the container runtime provides both), no device nodes (it provides /dev).
  rm -f "$work/rootfs/etc/resolv.conf" "$work/rootfs/etc/hostname"
  find "$work/rootfs/dev" -mindepth 1 -delete

  local args=() kv
  for kv in "${IMAGE_ENV[@]}"; do args+=(--env "$kv"); done
  nice -n 10 python3 e2e/cluster/oci_image.py --name "$IMAGE" --layer "$work/rootfs" "${args[@]}" \
    --user "$IMAGE_USER" --workdir "$IMAGE_WORKDIR" --output "$work/image.tar"
  mv "$work/image.tar" "$archive"
  # Only the current archive and wheels are kept.
  find "$dir" -maxdepth 1 \( -name "$CACHE_NAME-*.tar" -o -name 'wheels-*' \) ! -path "$archive" ! -path "$wheels" \
    -exec rm -rf {} +
  echo "Built $CACHE_NAME in $((SECONDS - start)) s: $(du -h "$archive" | cut -f1)"
  printf 'image %s\narchive %s\n' "$IMAGE" "$archive"
}
