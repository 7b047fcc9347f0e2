# iris-operator: the entry points. `make help` lists them.
#
# Caches live outside the repo (keyed by version) so a second run is fast:
#   $(IRIS_CACHE)/target     cargo's target directory
#   $(IRIS_CACHE)/<tool>-<v> Kubernetes components, etcd, helm built from their Go modules
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

IRIS_CACHE ?= $(HOME)/.cache/iris-operator
export IRIS_CACHE
export CARGO_TARGET_DIR ?= $(IRIS_CACHE)/target
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TARGET := x86_64-unknown-linux-gnu
# The cargo profile of the binaries in the images: release (fat LTO, what `make up`, `make push`
# and the benchmarks ship) or e2e (release without LTO and with parallel codegen: what
# `make test` builds, minutes faster on a fresh clone; the code is the same).
PROFILE ?= release
export PROFILE
RELEASE_DIR = $(CARGO_TARGET_DIR)/$(TARGET)/$(PROFILE)
BUILD := .build
MODEL_SERVER_IMAGE ?= iris-operator/model-server:$(VERSION)
OPERATOR_IMAGE ?= iris-operator/operator:$(VERSION)
# The cluster back end: kind on a Docker engine (e2e/kind; the engine is started when none runs).
CLUSTER ?= kind
# The local registry of `make registry` (e2e/tools/registry.sh).
REGISTRY_PORT ?= 5000
export MODEL_SERVER_IMAGE OPERATOR_IMAGE CLUSTER REGISTRY_PORT
WITH_CLUSTER := . e2e/select-cluster.sh && bash "$$CLUSTER_DIR"
# The e2e suite through registries (1, the default): two local registries (one htpasswd) are
# started, the chart is installed from oci:// and the cluster pulls every image; 0: `kind load`,
# and tests/registry.rs says it skips.
E2E_REGISTRY ?= 1
# Clusters made by make get containerd's registry config_path with it (harmless without one).
KIND_REGISTRY ?= $(E2E_REGISTRY)
export E2E_REGISTRY KIND_REGISTRY
# The kind cluster's nodes: 3 = kind-config.yaml (a control-plane and two workers; the e2e
# suite's disruption tests need the workers), 1 = kind-config-single.yaml (small machines;
# those tests then say they skip). KIND_USER_CONFIG=<file> names any other config.
KIND_NODES ?= 3
ifeq ($(KIND_NODES),1)
export KIND_USER_CONFIG ?= $(CURDIR)/kind-config-single.yaml
else ifneq ($(KIND_NODES),3)
$(error KIND_NODES must be 1 or 3, not $(KIND_NODES))
endif

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Main
.PHONY: up
up: images ## Build images, start a cluster, install the chart, deploy examples/iris-binary.yaml, print a prediction
	bash e2e/up.sh

.PHONY: down
down: ## Remove what `make up` made (the cluster, with the release and the example in it)
	$(WITH_CLUSTER)/down.sh

.PHONY: test
test: PROFILE = e2e
test: check unit chart-test e2e-fresh ## Everything CI runs: lint, unit tests, chart tests, e2e on a fresh cluster

##@ Development
.PHONY: check
check: ## cargo fmt --check, clippy with warnings denied (functions at most 80 lines), files at most 450 lines, shellcheck of every shell script, actionlint of the workflows, alerts and dashboard (promtool), the Dockerfiles readable by image-archive.sh
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	bash e2e/tools/lint-shell.sh
	bash e2e/tools/lint-sizes.sh
	for f in $$(git ls-files '*Dockerfile'); do bash e2e/tools/image-archive.sh --dockerfile "$$f" --check; done
	bash e2e/tools/lint-workflows.sh
	bash e2e/tools/check-monitoring.sh

.PHONY: unit
unit: ## Unit and integration tests (no cluster needed)
	cargo test --workspace --exclude e2e

.PHONY: crds
crds: ## Regenerate crds/irismodel.yaml and the chart's copy from the Rust types
	cargo run -q -p operator --bin crdgen > crds/irismodel.yaml
	cp crds/irismodel.yaml charts/iris-operator/files/irismodel.yaml

.PHONY: binaries
binaries: ## Static release binaries (glibc crt-static), staged in .build/bin
	RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile $(PROFILE) --locked --target $(TARGET) -p model-server -p operator
	mkdir -p $(BUILD)/bin
	install -m 0755 $(RELEASE_DIR)/model-server $(RELEASE_DIR)/iris-operator $(BUILD)/bin/

.PHONY: images
images: binaries ## Image archives of model-server and operator (docker build when an engine runs, else our own tooling)
	bash e2e/tools/build-images.sh

.PHONY: tools
tools: ## Build helm, etcd and the Kubernetes components into the cache (promtool: build-tools.sh promtool)
	bash e2e/tools/build-tools.sh

.PHONY: registry
registry: ## Start a local image registry on localhost:$(REGISTRY_PORT) (REGISTRY_AUTH=htpasswd for a private one); registry-stop stops it
	bash e2e/tools/registry.sh start
	@bash e2e/tools/registry.sh env | grep -v PASSWORD

.PHONY: registry-stop
registry-stop: ## Stop the local registry (its images stay on disk)
	bash e2e/tools/registry.sh stop

.PHONY: push
push: ## Push both images (by tag, checked by digest) and the chart (OCI) to REGISTRY=host[:port][/prefix]; prints the digests
	bash e2e/tools/push.sh

.PHONY: chart-test
chart-test: ## helm lint + helm template (default and all-options values), CRD copy check
	bash e2e/tools/chart-test.sh

##@ Clusters and end-to-end tests
.PHONY: cluster-up
cluster-up: ## Start the kind cluster
	$(WITH_CLUSTER)/up.sh

.PHONY: cluster-down
cluster-down: ## Delete it and its state
	$(WITH_CLUSTER)/down.sh

.PHONY: e2e
e2e: images ## Run the end-to-end suite on the running cluster (KUBECONFIG)
	bash e2e/run-suite.sh

.PHONY: e2e-fresh
e2e-fresh: images ## Start a fresh cluster, run the suite, tear the cluster down
	bash e2e/run-suite.sh --fresh

.PHONY: bench
bench: ## Benchmarks (figures go to BENCHMARKS.md); bench/operator.sh (5,000 models), bench/soak.sh (10 min) and bench/coldstart.sh (scale to zero) need a running cluster
	bash bench/model-server.sh
	SPLIT_CORES=1 SKIP_BUILD=1 bash bench/model-server.sh
	SKIP_BUILD=1 bash bench/grpc.sh
	SKIP_BUILD=1 bash bench/https.sh
	SKIP_BUILD=1 bash bench/observe.sh
	cargo test -q --release -p model-server metrics_layer_against_from_fn -- --ignored --nocapture
	bash bench/operator.sh
	bash bench/soak.sh
	bash bench/coldstart.sh
	MODEL_SERVER_BIN=$(RELEASE_DIR)/model-server cargo run -q -p e2e --bin halfopen
	$(MAKE) fuzz

# How long `make fuzz` runs the metrics-page fuzz target (10 minutes in `make bench`).
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: ## Fuzz the Prometheus text reader, the canary analysis and the scaler with hostile /metrics pages (cargo-fuzz, nightly; FUZZ_SECONDS, default 600)
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd fuzz && cargo +nightly fuzz run -s none metrics_page -- -dict=metrics.dict -max_total_time=$(FUZZ_SECONDS)

.PHONY: clean
clean: ## Remove .build (the caches outside the repo stay)
	rm -rf $(BUILD)
