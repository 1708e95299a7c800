#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules (no Docker and no release
# downloads exist on these machines) and caches them outside the repository, keyed by
# version:  ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/bin/<name>-<version>/<name>
# A binary already in the cache is never rebuilt, so a warm run returns at once.
#
# Measured on the 2-core, 24 GiB machine with an empty Go build cache: 824 s for all nine
# (one `go build` for the six Kubernetes commands, then etcd, kwok and helm), module downloads
# included; warm: 0.02 s.
#
# Usage: e2e/cluster/build.sh            build whatever is missing
#        e2e/cluster/build.sh --print    print "<name> <path>" for every binary, build nothing
set -euo pipefail

# One place for the versions; e2e/plane/binaries.py reads the same names from here.
KUBERNETES_VERSION=v1.35.8   # k8s.io/kubernetes; staging modules are v0.35.8 (see kubernetes/go.mod)
ETCD_VERSION=v3.6.16         # etcd/go.mod
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0         # newest helm 3 on the Go proxy; the chart tests use helm 3 semantics

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}"
BIN_DIR="$CACHE_DIR/bin"

declare -A VERSION_OF=(
  [kube-apiserver]=$KUBERNETES_VERSION
  [kube-controller-manager]=$KUBERNETES_VERSION
  [kube-scheduler]=$KUBERNETES_VERSION
  [kubectl]=$KUBERNETES_VERSION
  [kubelet]=$KUBERNETES_VERSION
  [kube-proxy]=$KUBERNETES_VERSION
  [etcd]=$ETCD_VERSION
  [kwok]=$KWOK_VERSION
  [helm]=$HELM_VERSION
)
NAMES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok helm)

path_of() { echo "$BIN_DIR/$1-${VERSION_OF[$1]}/$1"; }

if [[ "${1:-}" == "--print" ]]; then
  for n in "${NAMES[@]}"; do echo "$n $(path_of "$n")"; done
  exit 0
fi

command -v go >/dev/null || { echo "Go toolchain not found: install Go >= 1.25 to build the control plane" >&2; exit 1; }
# The modules declare go 1.25/1.26; never let the go command fetch another toolchain.
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath" CGO_ENABLED=0

missing() { [[ ! -x "$(path_of "$1")" ]]; }
# Builds go into a scratch dir and moves it into place, so an interrupted build never
# leaves a half-written binary in the cache that a later run would take as done.
install_into_cache() {  # name built-file
  local dest
  dest="$(path_of "$1")"
  mkdir -p "$(dirname "$dest")"
  mv -f "$2" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
  echo "Cached $1 ${VERSION_OF[$1]} at $dest"
}

START=$SECONDS
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
built_any=0

# --- kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy ----
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
need_k8s=()
for n in "${K8S_CMDS[@]}"; do missing "$n" && need_k8s+=("$n"); done
if ((${#need_k8s[@]})); then
  echo "Building ${need_k8s[*]} $KUBERNETES_VERSION (cold: about 8 minutes on 2 cores)"
  v="${KUBERNETES_VERSION#v}"
  major="${v%%.*}"; rest="${v#*.}"; minor="${rest%%.*}"
  # The same variables upstream's hack/lib/version.sh stamps, so `kubectl version` and the
  # apiserver's /version (read by clients and helm's kubeVersion checks) report the release.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  pkgs=()
  for n in "${need_k8s[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
  # One go build for all commands: they share most packages, and go compiles them once.
  (cd "$HERE/kubernetes" && go build -ldflags "$ldflags" -o "$SCRATCH/" "${pkgs[@]}")
  for n in "${need_k8s[@]}"; do install_into_cache "$n" "$SCRATCH/$n"; done
  built_any=1
fi

# --- etcd -----------------------------------------------------------------------------
if missing etcd; then
  echo "Building etcd $ETCD_VERSION"
  (cd "$HERE/etcd" && go build -ldflags "-s -w" -o "$SCRATCH/etcd" .)
  install_into_cache etcd "$SCRATCH/etcd"
  built_any=1
fi

# --- kwok -----------------------------------------------------------------------------
if missing kwok; then
  echo "Building kwok $KWOK_VERSION"
  # go install @version builds with kwok's own go.sum, so the build is reproducible as is.
  GOBIN="$SCRATCH" go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  install_into_cache kwok "$SCRATCH/kwok"
  built_any=1
fi

# --- helm -----------------------------------------------------------------------------
if missing helm; then
  echo "Building helm $HELM_VERSION"
  GOBIN="$SCRATCH" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  install_into_cache helm "$SCRATCH/helm"
  built_any=1
fi

if ((built_any)); then
  echo "Control plane binaries built in $((SECONDS - START)) s"
else
  echo "Control plane binaries are cached in $BIN_DIR"
fi
