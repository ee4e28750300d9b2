# v6lab — IPv6-only Kubernetes labs with Cilium, and conformance proven from packets.
# `make help` lists the targets.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin/v6lab
SPEC       ?=
SPEC_FLAG  := $(if $(SPEC),--spec $(SPEC),)
# The Cilium releases make test's version axis runs (the first is the baseline);
# CILIUM="1.18.4 1.20.2" make conformance runs the main job's matrix at each;
# UPGRADE=1.18.4,1.19.3,1.20.2 upgrades each lab in place along that chain instead
# (and back one step), the suite at every stage.
# make test's version axis: an in-place upgrade from the first to the second.
TEST_CILIUM ?= 1.19.3 1.20.2
UPGRADE    ?=
comma      := ,
CILIUM     ?=
# The release of the embedded labs (spec.versions.cilium's default; a unit test keeps
# the two equal). make conformance and make lab-up build only the releases they run.
DEFAULT_CILIUM := 1.20.2
# The releases make cilium builds (CILIUM_VERSIONS="1.19.5" make cilium for one): any
# release of a supported minor that the Go module proxy serves, built the same way.
CILIUM_VERSIONS ?= $(DEFAULT_CILIUM) 1.19.3 1.18.4
RUNS       ?= runs
FUZZTIME   ?= 30s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/v6lab, bin/v6lab-runc (the OCI runtime wrapper some hosts need), bin/v6lab-probe
	$(GO) build -trimpath -o $(BIN) ./cmd/v6lab
	$(GO) build -trimpath -o bin/v6lab-runc ./cmd/v6lab-runc
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/v6lab-probe ./fixtures/probe
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/v6lab-node ./fixtures/node
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/v6lab-pause ./fixtures/pause
	$(GO) test -c -trimpath -o bin/v6lab-conformance.test ./suites/conformance

.PHONY: tools
tools: ## build containerlab (pinned) and v6lab-clab once, cached in ~/.cache/v6lab, linked into bin/
	@scripts/tools.sh $(abspath bin)

.PHONY: k8s
k8s: ## build Kubernetes, etcd and CoreDNS from their Go modules for the offline node and cluster DNS images (cached; ~7 min cold)
	@scripts/k8s.sh $(abspath bin/k8s)
	@scripts/coredns.sh $(abspath bin/coredns)

.PHONY: cilium
cilium: build ## build Cilium's programs, BPF sources and chart (CILIUM_VERSIONS: any release the Go proxy serves) from each release's Go module (labs/ciliumbuild; cached by content key; ~6 min cold each)
	@$(BIN) images build --programs-only $(foreach v,$(CILIUM_VERSIONS),--cilium $(v))

.PHONY: metallb
metallb: ## build MetalLB's programs from its Go module for the offline MetalLB images (cached; ~3 min cold)
	@scripts/metallb.sh $(abspath bin/metallb)

.PHONY: host-setup
host-setup: build ## install/start Docker and apply the host adaptations this host needs
	@$(BIN) host setup

.PHONY: conformance
conformance: build tools k8s metallb ## the main job: for each lab of the matrix (SPEC=... for one): up, conformance suite, report, down
	@$(MAKE) --no-print-directory cilium CILIUM_VERSIONS="$(or $(CILIUM),$(subst $(comma), ,$(UPGRADE)),$(DEFAULT_CILIUM))"
	@$(BIN) host setup
	@$(BIN) images prune >/dev/null
	@$(BIN) conformance --runs $(RUNS) $(SPEC_FLAG) $(foreach v,$(CILIUM),--cilium $(v)) $(if $(UPGRADE),--upgrade $(UPGRADE),)

.PHONY: test
test: build tools k8s metallb ## everything CI runs: host setup, vet, unit, golden and integration tests (real labs)
	@$(MAKE) --no-print-directory cilium CILIUM_VERSIONS="$(TEST_CILIUM)"
	$(BIN) host setup
	@# Stale images, their archives and the node stores seeded from them (a changed
	@# recipe leaves ~2 GB each behind: the CI machine's disk filled once).
	$(BIN) images prune
	$(GO) vet ./...
	@# One package at a time: the integration packages run real labs whose outage
	@# measurements must not compete for the two cores. The conformance suite's labs run
	@# below, through v6lab conformance (the same test binary); here only its unit tests.
	$(GO) test -count=1 -p 1 $$($(GO) list ./... | grep -v '/suites/conformance$$')
	$(GO) test -count=1 -short ./suites/conformance
	@# The version axis: the default lab (native routing + Cilium BGP) at the first
	@# release, upgraded in place under traffic to the second (upgrade-disruption),
	@# each stage's suite compared with the one before; MetalLB mode at the default
	@# release. The nightly (.github/workflows/nightly-conformance.yml) runs every lab
	@# at 1.18.4 and 1.20.2, the tunnel lab, and the whole chain 1.18.4 -> 1.19.3 ->
	@# 1.20.2 -> 1.19.3 on the default and metallb labs: make test's 45 min warm
	@# holds one upgrade step, not the chain (each stage is a suite run, ~8 min).
	@# hubble-flows runs once, in the metallb lab's suite below (the nightly: everywhere).
	$(BIN) conformance --matrix embedded:default --upgrade $(subst $() ,$(comma),$(strip $(TEST_CILIUM))) --downgrade=false --skip '^hubble-flows$$' --runs $${TMPDIR:-/tmp}/v6lab-test-runs
	@# MetalLB mode (XDP acceleration on, as the seed asks) at the default release, run by a test that reads v6lab conformance's
	@# output as CI does (no terminal) and asserts the lines stream as the lab comes up
	@# and each check and control finishes (cmd/v6lab TestConformanceStreams).
	V6LAB_STREAM_MATRIX=embedded:metallb V6LAB_STREAM_RUNS=$${TMPDIR:-/tmp}/v6lab-test-runs \
	  $(GO) test -count=1 -v -timeout 50m -run '^TestConformanceStreams$$' ./cmd/v6lab
	@# MetalLB layer 2 mode (NDP on a segment the nodes share with the edge router): its
	@# own checks, the client reaching every VIP over the segment, DSR replies leaving
	@# the backend's node although requests enter through the VIP's owner, and the drop ledger;
	@# the lab's whole suite runs in make conformance's matrix (nightly): make test's
	@# 45 min warm holds these, not all of it.
	$(BIN) conformance --matrix embedded:metallb-l2 --check '^(vip-reachability|l2-announcement|dsr-return-path|l2-failover|no-unexpected-drops)$$' --runs $${TMPDIR:-/tmp}/v6lab-test-runs

.PHONY: unit
unit: ## unit tests only (no external tools)
	$(GO) test -short ./...

.PHONY: fuzz
fuzz: ## fuzz the spec decoder, the planner, the capture reader and the frame decoder for FUZZTIME each
	$(GO) test ./labs/spec -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./labs/plan -run '^$$' -fuzz FuzzPlan -fuzztime $(FUZZTIME)
	$(GO) test ./labs/verdict -run '^$$' -fuzz '^FuzzEach$$' -fuzztime $(FUZZTIME)
	$(GO) test ./labs/verdict -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)

.PHONY: bench
bench: build tools k8s metallb ## print figures: analysis throughput (1M packets, vs tshark), cold/warm image build, up, the suite, down
	@$(MAKE) --no-print-directory cilium CILIUM_VERSIONS="$(DEFAULT_CILIUM)"
	@command -v tshark >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null)
	$(GO) test -run '^$$' -bench . -benchtime 3x ./labs/verdict
	@scripts/bench.sh $(BIN)

.PHONY: golden
golden: ## rewrite the renderers' golden files after an intended change
	$(GO) test ./labs/render -run TestGolden -update

.PHONY: plan
plan: build ## print the address plan (SPEC=... for another lab)
	@$(BIN) plan $(SPEC_FLAG)

.PHONY: render
render: build ## render every config of the lab into $(RUNS)/render
	@$(BIN) render $(SPEC_FLAG) -o $(RUNS)/render

.PHONY: lab-up
lab-up: build tools k8s ## stand up the lab (SPEC=... for another; CILIUM=1.18.4 for another release), then show its status
	@$(MAKE) --no-print-directory cilium CILIUM_VERSIONS="$(or $(CILIUM),$(DEFAULT_CILIUM))"
	@$(if $(findstring metallb,$(SPEC)),$(MAKE) --no-print-directory metallb,true)
	@$(BIN) up $(SPEC_FLAG) $(foreach v,$(CILIUM),--cilium $(v))
	@$(BIN) status $(SPEC_FLAG)

.PHONY: lab-down
lab-down: build tools ## remove the lab (SPEC=... for another; ALL=1 for every lab)
	@$(BIN) down $(if $(ALL),--all,$(SPEC_FLAG))

.PHONY: lab-status
lab-status: build ## show the lab's members, BGP sessions and learned prefixes
	@$(BIN) status $(SPEC_FLAG)

.PHONY: clean
clean: ## remove build output
	rm -rf bin $(RUNS)
