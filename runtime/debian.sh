# Sourced by the image scripts that build a Debian root filesystem with mmdebstrap (cpu-image.sh,
# venv-image.sh): the suite of their Dockerfiles' debian:bookworm-slim, where its packages come from,
# and the options that leave out what the slim image leaves out (docs, man pages, translations;
# minbase is the closest variant). Both scripts' cache keys cover these lines.
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SOURCES=("deb $DEBIAN_MIRROR $SUITE main" "deb $DEBIAN_MIRROR $SUITE-updates main"
         "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main")
SLIM=(--aptopt='APT::Install-Recommends "false"' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright')

# Bytecode that stays valid in an image whose every mtime is 0 (e2e/cluster/oci_image.py sets them so,
# for reproducible image IDs): pip's bytecode is checked against the sources' mtimes, so every Python
# process of such an image compiled each module again, and could not keep the result (the venv is
# root's) - vLLM's three processes spent as long compiling bytecode as importing. Hash-based and never
# checked against the sources (an image's sources never change). Installs pass --no-compile; files
# that do not compile on the image's Python (Python 3.12-only test files) are left out, as pip leaves
# them out. The stdlib is compiled again too (Debian compiles it at install, checked by time).
# The Dockerfiles run the same command.
BYTECODE="-m compileall -q -f -j 0 --invalidation-mode unchecked-hash"

# Installs Debian packages on this machine (the build's own tools), one apt at a time: `make test`
# runs the image builds side by side, and a second apt-get would fail on dpkg's lock.
install_host_packages() {
  command -v apt-get >/dev/null || { echo "Install $* to build the image (no apt-get here)" >&2; return 1; }
  echo "Installing the image build's packages: $*"
  flock "${TMPDIR:-/tmp}/llm-operator-apt.lock" env DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"' _ "$@"
}
