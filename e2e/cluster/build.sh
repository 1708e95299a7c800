#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules (no Docker and no release
# downloads exist on these machines) and caches them outside the repository, keyed by
# version:  ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/bin/<name>-<version>/<name>
# A binary already in the cache is never rebuilt, so a warm run returns at once.
#
# Measured on the 2-core, 24 GiB machine with an empty Go build cache: 824 s for the first nine
# (one `go build` for the six Kubernetes commands, then etcd, kwok and helm), module downloads
# included; then KEDA's operator and adapter 458 s (its modules already downloaded) and Prometheus
# 152 s (downloads included); warm: 0.02 s.
#
# Usage: e2e/cluster/build.sh            build whatever is missing
#        e2e/cluster/build.sh --print    print "<name> <path>" for every binary, build nothing
set -euo pipefail

# One place for the versions; e2e/plane/binaries.py reads the same names from here.
KUBERNETES_VERSION=v1.35.8   # k8s.io/kubernetes; staging modules are v0.35.8 (see kubernetes/go.mod)
ETCD_VERSION=v3.6.16         # etcd/go.mod
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0         # newest helm 3 on the Go proxy; the chart tests use helm 3 semantics
KEDA_VERSION=v2.21.0         # github.com/kedacore/keda/v2: keda-operator, keda-adapter and KEDA's CRDs
PROMETHEUS_VERSION=v0.316.0  # github.com/prometheus/prometheus, the Go module of Prometheus 3.16.0

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
  [keda-operator]=$KEDA_VERSION
  [keda-adapter]=$KEDA_VERSION
  [prometheus]=$PROMETHEUS_VERSION
)
NAMES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok helm
       keda-operator keda-adapter prometheus)

path_of() { echo "$BIN_DIR/$1-${VERSION_OF[$1]}/$1"; }
# KEDA's CRDs (config/crd/bases of its module), kept beside the operator; the plane applies them.
keda_crd_dir() { echo "$(dirname "$(path_of keda-operator)")/crds"; }

if [[ "${1:-}" == "--print" ]]; then
  for n in "${NAMES[@]}"; do echo "$n $(path_of "$n")"; done
  echo "keda-crds $(keda_crd_dir)"
  exit 0
fi

command -v go >/dev/null || { echo "Go toolchain not found: install Go >= 1.26.7 to build the control plane" >&2; exit 1; }
# The modules declare go 1.25 to 1.26.7 (Prometheus); never let the go command fetch another toolchain. GOWORK=off:
# Prometheus's module ships a go.work naming directories its module zip leaves out.
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath" CGO_ENABLED=0 GOWORK=off

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

# Directory of a module version in the module cache, downloaded if need be. KEDA and Prometheus
# are built inside it: their go.mod files carry `replace` directives, which `go install pkg@version`
# refuses.
module_dir() {  # module version
  local json
  json="$(go mod download -json "$1@$2")" || { echo "$json" >&2; return 1; }
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json"
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

# --- KEDA: keda-operator and keda-adapter (its external metrics API server), and its CRDs ---------
if missing keda-operator || missing keda-adapter || [[ ! -f "$(keda_crd_dir)/keda.sh_scaledobjects.yaml" ]]; then
  echo "Building keda-operator and keda-adapter $KEDA_VERSION (cold: about 8 minutes on 2 cores)"
  dir="$(module_dir github.com/kedacore/keda/v2 "$KEDA_VERSION")"
  # The adapter serves its own /metrics on ":<--port>", every interface, and has no flag for the
  # address; the plane listens on loopback only. So it is built from a copy of the module (go
  # refuses overlays of the read-only module cache) with that address bound to 127.0.0.1; the
  # build fails if the line ever changes upstream.
  src="$SCRATCH/keda-src"
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  sed -i 's|fmt.Sprintf(":%v", metricsAPIServerPort)|fmt.Sprintf("127.0.0.1:%v", metricsAPIServerPort)|' \
    "$src/cmd/adapter/main.go"
  grep -qF 'metricsBindAddress := fmt.Sprintf("127.0.0.1:%v", metricsAPIServerPort)' "$src/cmd/adapter/main.go" ||
    { echo "KEDA $KEDA_VERSION: the adapter's metrics address line changed; update build.sh" >&2; exit 1; }
  mkdir -p "$SCRATCH/keda"
  (cd "$src" && go build -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}" \
    -o "$SCRATCH/keda/" ./cmd/operator ./cmd/adapter)
  # The CRDs first: a cached operator binary then implies its CRDs are there too.
  crds="$(keda_crd_dir)"
  mkdir -p "$crds.tmp"
  cp "$src"/config/crd/bases/*.yaml "$crds.tmp/"
  rm -rf "$crds" && mv "$crds.tmp" "$crds"
  install_into_cache keda-operator "$SCRATCH/keda/operator"
  install_into_cache keda-adapter "$SCRATCH/keda/adapter"
  built_any=1
fi

# --- Prometheus -------------------------------------------------------------------------
if missing prometheus; then
  echo "Building prometheus $PROMETHEUS_VERSION (cold: about 3 minutes on 2 cores)"
  dir="$(module_dir github.com/prometheus/prometheus "$PROMETHEUS_VERSION")"
  # Only the Kubernetes service discovery (the plane needs no other), and the web UI's assets left
  # out (they are not in the module; the API and /-/ready work without them).
  # The Go module v0.MNN.P is Prometheus M.NN.P (v0.316.0 is 3.16.0), what `prometheus --version` prints.
  v="${PROMETHEUS_VERSION#v0.}"; release="${v:0:1}.${v:1:2}.${v#*.}"
  mkdir -p "$SCRATCH/prometheus"
  (cd "$dir" && go build -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    -o "$SCRATCH/prometheus/" ./cmd/prometheus)
  install_into_cache prometheus "$SCRATCH/prometheus/prometheus"
  built_any=1
fi

if ((built_any)); then
  echo "Control plane binaries built in $((SECONDS - START)) s"
else
  echo "Control plane binaries are cached in $BIN_DIR"
fi
