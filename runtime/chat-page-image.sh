#!/usr/bin/env bash
# Builds the chat page image (Open WebUI), the same image as runtime/Dockerfile.chat-page, with no
# Docker engine (runtime/venv-image.sh says how, and where it is cached).
#
# Measured on the 2-core, 24 GiB machine (2026-12-06): see the figures in runtime/Dockerfile.chat-page.
#
# Usage: runtime/chat-page-image.sh           build what is missing; print "image NAME" and "archive PATH"
#        runtime/chat-page-image.sh --print   print them; build nothing
set -euo pipefail
cd "$(dirname "$0")/.."

source runtime/venv-image.sh
read_versions chat_page_image open-webui=OPEN_WEBUI_VERSION
CACHE_NAME=chat-page-image
LOCK_FILE=runtime/chat-page-requirements.txt
# The packages of runtime/Dockerfile.chat-page's apt-get line (tests/runtime/test_versions.py checks).
DEBIAN_PACKAGES=(python3 python3-venv)
VENV=/opt/open-webui
IMAGE_USER_NAME=webui
# The ENV and WORKDIR lines of runtime/Dockerfile.chat-page.
IMAGE_ENV=(PATH=/opt/open-webui/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/tmp)
IMAGE_WORKDIR=/tmp
# Left out of the lock on purpose (it says why): nothing else may be missing.
UNMET_ALLOWED='^open-webui [^ ]+ requires (accelerate|sentence-transformers), which is not installed\.$'

build_venv_image "$@"
