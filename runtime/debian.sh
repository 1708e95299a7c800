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
