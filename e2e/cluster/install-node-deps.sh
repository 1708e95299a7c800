#!/usr/bin/env bash
# Installs the Debian packages the plane's real node needs, each only when it is missing, so a warm
# run does nothing (and never touches apt): containerd, runc, the CNI plugins, iptables, conntrack,
# iproute2, gcc + libc6-dev for the static pause binary, Chromium for the chat page's browser test
# (e2e/browser.py), and mmdebstrap for the image builds. Idempotent; needs root to install.
#
# LLMOPS_REAL_NODE=0 skips it (the plane then runs without its real node). Without root it only
# says what is missing; `python -m plane up` refuses to start the real node until it is there.
set -euo pipefail

if [[ "${LLMOPS_REAL_NODE:-1}" =~ ^(0|false|no|off)$ ]]; then
  exit 0
fi

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
have() { command -v "$1" >/dev/null 2>&1; }

# package -> how to tell it is installed
need=()
have containerd && have ctr && have containerd-shim-runc-v2 || need+=(containerd)
have runc || need+=(runc)
for plugin in bridge host-local portmap loopback; do
  [[ -x /usr/lib/cni/$plugin ]] || { need+=(containernetworking-plugins); break; }
done
have iptables && have ip6tables || need+=(iptables)
have conntrack || need+=(conntrack)
have ip || need+=(iproute2)
have gcc || need+=(gcc)
compgen -G "/usr/lib/*/libc.a" >/dev/null || need+=(libc6-dev)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
# The image builds' own tool (runtime/debian.sh): installed here too, so that the builds `make test`
# runs side by side never start apt at the same time.
have mmdebstrap || need+=(mmdebstrap)

if ((${#need[@]} == 0)); then
  exit 0
fi

if [[ $EUID -ne 0 ]]; then
  echo "The real node needs these packages: ${need[*]}. Run \`make cluster-tools\` as root to install them," >&2
  echo "or set LLMOPS_REAL_NODE=0 to run the plane without its real node." >&2
  exit 0
fi
if ! have apt-get; then
  echo "Cannot install ${need[*]}: no apt-get on this machine; install them by other means." >&2
  exit 1
fi

echo "Installing the real node's packages: ${need[*]}"
# Debian starts a newly installed containerd as a system service; the plane runs its own, so keep
# the package from starting one (policy-rc.d, only for the duration of this install).
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
