#!/usr/bin/env bash
# Build (or reuse) the environment in which tests/vllm_check.py runs vLLM's own argument parser.
#
#   ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/vllm-check-<VLLM_VERSION>/
#     venv/       python venv: vllm==<VLLM_VERSION> --no-deps + runtime/vllm-check-requirements.txt --no-deps
#     .complete   written last; holds a hash of the inputs, so a changed requirements file rebuilds
#
# Warm: one hash comparison. Cold: downloads ~3.5 GB from PyPI (vllm wheel, torch and the CUDA
# runtime libraries torch links against) and installs them; see the closing note of issue 5 for times.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VERSION=$(sed -n 's/^VLLM_VERSION = "\(.*\)"$/\1/p' runtime/llm_runtime/versions.py)
[ -n "$VERSION" ] || { echo "VLLM_VERSION not found in runtime/llm_runtime/versions.py" >&2; exit 1; }
CACHE=${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}
DIR=$CACHE/vllm-check-$VERSION
REQ=runtime/vllm-check-requirements.txt
KEY=$( (echo "vllm==$VERSION"; "$PYTHON" -c 'import sys; print(sys.version_info[:2])'; cat "$REQ" "$0") | sha256sum | cut -c1-16)

if [ -f "$DIR/.complete" ] && [ "$(cat "$DIR/.complete")" = "$KEY" ]; then
  echo "vLLM $VERSION check environment is ready: $DIR"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/vllm-check-$VERSION.lock"
flock 9  # one builder at a time; a second `make` waits and then finds it ready
if [ -f "$DIR/.complete" ] && [ "$(cat "$DIR/.complete")" = "$KEY" ]; then
  echo "vLLM $VERSION check environment is ready: $DIR"
  exit 0
fi

echo "Building the vLLM $VERSION check environment in $DIR (cold: a few minutes, ~5 GB)"
start=$(date +%s)
rm -rf "$DIR"
"$PYTHON" -m venv "$DIR/venv"
PIP=("$DIR/venv/bin/python" -m pip --disable-pip-version-check --no-input)
"${PIP[@]}" install -q --no-cache-dir --no-deps "vllm==$VERSION"
"${PIP[@]}" install -q --no-cache-dir --no-deps -r "$REQ"

# The check: the parser imports and builds exactly as `vllm serve` builds it.
VLLM_TARGET_DEVICE=cpu "$DIR/venv/bin/python" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.common.cli_args import make_arg_parser
from vllm.entrypoints.launchers.run_batch import make_arg_parser as make_batch_arg_parser
top = FlexibleArgumentParser(prog="vllm")
subparsers = top.add_subparsers(dest="subparser")
make_arg_parser(subparsers.add_parser("serve"))
make_batch_arg_parser(subparsers.add_parser("run-batch"))
PY
echo "$KEY" > "$DIR/.complete"
echo "Built the vLLM $VERSION check environment in $(( $(date +%s) - start ))s: $DIR"
