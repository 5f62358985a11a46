# StreamHouse build, test and tooling. `make help` lists the targets.
#
# Tools are built once into ./bin from their Go modules (never downloaded as binaries):
# MinIO from its pinned pseudo-version, etcd and etcdctl from the etcd v3.6.16 modules that
# go.mod pins (its `tool` directives).

SHELL        := /usr/bin/env bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := help

GO            ?= go
BIN           := $(CURDIR)/bin
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
GRPCURL_VERSION := v1.9.4
NATS_SERVER_VERSION := v2.15.2
NATSCLI_VERSION := v0.5.0
BENCH_DURATION ?= 20s
GOTEST_FLAGS  ?= -count=1 -timeout 20m
FUZZTIME      ?= 30s
BENCHCOUNT    ?= 5

export STREAMHOUSE_BIN := $(BIN)
export CGO_ENABLED     ?= 0

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/streamhouse and bin/streamctl
	$(GO) build ./...
	$(GO) build -o $(BIN)/streamhouse ./cmd/streamhouse
	$(GO) build -o $(BIN)/streamctl ./cmd/streamctl

.PHONY: run
run: build ## run a single-process cluster: embedded etcd, segments under ./data, API on 127.0.0.1:50051, Kafka on 127.0.0.1:9092
	$(BIN)/streamhouse dev $(DEVFLAGS)

# What the integration tests, the benchmarks and the compose images start: MinIO, etcd
# and etcdctl, built here from their modules.
SERVICES := $(BIN)/.minio-$(MINIO_VERSION) $(BIN)/etcd $(BIN)/etcdctl

.PHONY: tools
tools: $(SERVICES) $(BIN)/.grpcurl-$(GRPCURL_VERSION) $(BIN)/prometheus deb-tools ## build the test tools into ./bin (MinIO, etcd, etcdctl, grpcurl; Prometheus and promtool from Debian's package) and install kcat (and docker-compose where Docker has no compose)

# kcat, the Kafka client the shell tests drive, links librdkafka: it is installed from
# Debian's packages (as root) rather than copied out of one. Where Docker runs but has
# neither `docker compose` nor docker-compose, Debian's docker-compose is installed, so
# that the compose test runs rather than stops.
.PHONY: deb-tools
deb-tools:
	@command -v kcat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; }
	@if docker info >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose; fi

# The stamp names the version, so that changing MINIO_VERSION rebuilds MinIO and nothing
# else does.
$(BIN)/.minio-$(MINIO_VERSION):
	@mkdir -p $(BIN)
	@echo "building MinIO $(MINIO_VERSION) from its module (a few minutes on a fresh machine)"
	GOBIN=$(BIN) $(GO) install -trimpath github.com/minio/minio@$(MINIO_VERSION)
	@rm -f $(BIN)/.minio-*
	@touch $@

$(BIN)/.grpcurl-$(GRPCURL_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install -trimpath github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@rm -f $(BIN)/.grpcurl-*
	@touch $@

$(BIN)/etcd: go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $@ go.etcd.io/etcd/server/v3

$(BIN)/etcdctl: go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $@ go.etcd.io/etcd/etcdctl/v3

# NATS JetStream, the peer of `make bench-peers`, from its modules.
$(BIN)/.nats-server-$(NATS_SERVER_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install -trimpath github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	@rm -f $(BIN)/.nats-server-*
	@touch $@

$(BIN)/.natscli-$(NATSCLI_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install -trimpath github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)
	@rm -f $(BIN)/.natscli-*
	@touch $@

# Prometheus is not a Go module one can build without its web UI's JavaScript; Debian's
# package is the one a registry here serves. Its binaries are taken out of the .deb
# (nothing is installed); they link the host's glibc.
$(BIN)/prometheus:
	@mkdir -p $(BIN)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cd "$$tmp" && \
	  { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb pkg && cp pkg/usr/bin/promtool pkg/usr/bin/prometheus $(BIN)/

.PHONY: test
test: tools lint ## run every test (unit and integration against real MinIO/etcd); builds tools first
	$(GO) test $(GOTEST_FLAGS) ./...

# Fuzz targets, package:function: every decoder of untrusted input.
FUZZ_TARGETS := segmentstore:FuzzDecode segmentstore:FuzzConcat gateway:FuzzProduceRequest coordination:FuzzGroupOffsetKey coordination:FuzzDecodeSegment coordination:FuzzDecodeTopic \
  gateway/kafka:FuzzRecordBatches gateway/kafka:FuzzDecompress gateway/kafka:FuzzRequestFrame gateway/kafka:FuzzReadRequest gateway/grpcmem:FuzzDecodeFetchResponse

.PHONY: fuzz
fuzz: ## fuzz every decoder of untrusted input for FUZZTIME each (default 30s); crashers land in <package>/testdata/fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $$t for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./$${t%%:*}/ || exit 1; \
	done

SOAK_DURATION ?= 10m
SOAK_RATE ?= 6000
CHAOS_FAULTS ?= 200
CHAOS_SEED   ?= 1

.PHONY: chaos
chaos: tools ## fault injection, CHAOS_FAULTS (200) faults with CHAOS_SEED (1): prints the table of docs/RELIABILITY.md, also in bin/chaos-report.md
	CHAOS_FAULTS=$(CHAOS_FAULTS) CHAOS_SEED=$(CHAOS_SEED) CHAOS_REPORT=$(BIN)/chaos-report.md \
	  $(GO) test -count=1 -run '^TestChaos$$' -v -timeout 180m ./tests/chaos/ | grep -v 'logger.go'
	@cat $(BIN)/chaos-report.md

.PHONY: bench bench-peers
bench-peers: tools $(BIN)/.nats-server-$(NATS_SERVER_VERSION) $(BIN)/.natscli-$(NATSCLI_VERSION) ## StreamHouse (gRPC and Kafka) vs NATS JetStream and the floors (MinIO PUT, etcd txn, LZ4), one run; BENCH_DURATION per phase (20s); BENCH_PROFILE=dir also writes CPU profiles of each phase
	$(GO) run ./tests/bench/peers -duration $(BENCH_DURATION) -json $(BIN)/bench-peers.json $(if $(BENCH_PROFILE),-profile $(BENCH_PROFILE)) | tee $(BIN)/bench-peers.md

bench: $(SERVICES) ## segment codec vs raw LZ4; etcd commit latency; a history read's index lookup in 1,000 and 20,000 segments; produce throughput and latency vs their floor
	$(GO) test -run '^$$' -bench '^BenchmarkSegment$$' -count $(BENCHCOUNT) ./segmentstore/ | tee $(BIN)/bench-segment.txt
	@awk -f tests/bench/segment-ratio.awk $(BIN)/bench-segment.txt
	$(GO) test -run '^$$' -bench '^BenchmarkCommit$$' -benchtime 3s ./coordination/ | grep -E '^(Benchmark|ok|FAIL)'
	$(GO) test -run '^$$' -bench '^BenchmarkSegmentsAt$$' -benchtime 50x ./coordination/ | grep -E '^(Benchmark|ok|FAIL)'
	$(GO) test -run '^$$' -bench '^BenchmarkProduce' -benchtime 1x -timeout 10m ./actors/ | grep -E '^(Benchmark|ok|FAIL)'

.PHONY: soak
soak: tools build ## retention, merging and etcd compaction under continuous produce: SOAK_DURATION (10m) at SOAK_RATE records/s; prints the curve of keys and etcd db size
	$(GO) run ./tests/bench/soak -duration $(SOAK_DURATION) -rate $(SOAK_RATE) -json $(BIN)/soak.json | tee $(BIN)/soak.md

.PHONY: failover
failover: tools ## kill -9 an agent under load 5 times; prints the time to the first produce on a moved partition
	$(GO) test -run '^TestKillAgentUnderLoadLosesNoAckedRecord$$' -count 5 -v -timeout 20m ./tests/cluster/ | grep -E 'kill -9 of|^(ok|FAIL|--- FAIL)'

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_PROJECT ?= streamhouse

.PHONY: images
images: $(SERVICES) $(BIN)/prometheus ## build the compose images (streamhouse, etcd, MinIO, Prometheus) from binaries built here
	bash deploy/compose/images.sh

.PHONY: up
up: images ## start the compose cluster: 3 etcd, MinIO, 3 agents (API on localhost:50051-50053, Kafka on :9092-9094), Prometheus (:9090)
	cd deploy/compose && $(COMPOSE) -p $(COMPOSE_PROJECT) up -d
	cd deploy/compose && $(COMPOSE) -p $(COMPOSE_PROJECT) ps

.PHONY: demo
demo: build ## on the compose cluster: topics, produce, consume, segments in etcd and MinIO
	bash deploy/compose/demo.sh

.PHONY: failover-demo
failover-demo: build ## on the compose cluster: kill an agent under load, show the move, verify no acked record is lost
	bash deploy/compose/failover-demo.sh

.PHONY: inspect
inspect: build ## on the compose cluster: etcd's view (members, leases with epochs, hwm, segments, groups)
	bash deploy/compose/inspect.sh

.PHONY: down
down: ## stop the compose cluster and delete its data
	cd deploy/compose && $(COMPOSE) -p $(COMPOSE_PROJECT) --profile grafana down -v --remove-orphans

PROTOS := actors/partitionpb/partition.proto gateway/streamhousepb/streamhouse.proto

.PHONY: proto
proto: ## regenerate the committed protobuf code (installs protoc from Debian if missing)
	@command -v protoc >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler)
	protoc --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=. --go_opt=module=github.com/streamhouse/streamhouse \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/streamhouse/streamhouse $(PROTOS)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: clean
clean: ## remove build outputs, reports and make run's data in ./data (keeps the tools in ./bin)
	rm -f $(BIN)/streamhouse $(BIN)/streamctl $(BIN)/bench-*.txt $(BIN)/bench-peers.md $(BIN)/bench-peers.json $(BIN)/soak.md $(BIN)/soak.json $(BIN)/chaos-report.md
	rm -rf ./data
