# tapline — see README.md. `make test` installs and starts every service the tests need.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
SERVICES := integration/services.sh
# Integration tests read endpoints from this file (written by services-up).
export TAPLINE_SERVICES_ENV := $(CURDIR)/.services/env
# Embedded chDB loads libchdb.so from this path when a store opens, so test
# binaries need it in their environment. Read when a recipe runs, i.e. after
# services-up has written the env file.
export CHDB_LIB_PATH ?= $(shell sed -n 's/^CHDB_LIB_PATH=//p' '$(CURDIR)/.services/env' 2>/dev/null)

.PHONY: build test fuzz test-unit test-integration lint services-up services-down bench bench-mask dev fmt chaos

## build: the production binary (static, no chDB) and the dev binary (embedded chDB).
build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/tapline ./cmd/tapline
	$(GO) build -tags chdb -ldflags '$(LDFLAGS)' -o bin/tapline-dev ./cmd/tapline

## test: unit and integration tests against real Kafka, Postgres, sshd, ClickHouse and chDB.
# Integration tests share two cores with Kafka, Postgres and ClickHouse; a test
# that fails is run again (at most twice, only when few failed) and every rerun
# is listed at the end, so a flake stays visible without sinking the run.
test: lint services-up
	@mkdir -p .services
	$(GO) tool gotestsum --format pkgname --rerun-fails=2 --rerun-fails-max-failures=3 \
	  --rerun-fails-run-root-test --rerun-fails-report=.services/reruns.txt \
	  --packages ./... -- -tags chdb -count=1 -timeout 30m
	@if [ -s .services/reruns.txt ]; then echo "tests that needed a rerun:"; cat .services/reruns.txt; fi
	FUZZTIME=1000x integration/fuzz.sh

## fuzz: every native fuzz target for longer (FUZZTIME=60s each by default; a count such as 100000x also works).
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} integration/fuzz.sh

## test-unit: no services needed; integration tests skip under -short.
test-unit:
	$(GO) test -short -race -count=1 -timeout 5m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null)); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags chdb ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

services-up:
	$(SERVICES) up

services-down:
	$(SERVICES) down

bench: build services-up
	integration/bench/run.sh

## bench-mask: masking throughput per core over a realistic mix (docs/performance.md, "Masking")
bench-mask:
	go test -run '^$$' -bench BenchmarkMask -benchmem -cpu 1 ./processors/mask

## chaos: the fault campaign on a three-broker Kafka cluster (docs/reliability.md).
# CHAOS_DURATION: how long sessions are started (default 10m); CHAOS_SEED: the
# fault schedule and load mix (default: time); the report goes to .services/chaos-report.txt.
CHAOS_DURATION ?= 10m
CHAOS_SEED ?=
chaos: services-up
	$(SERVICES) up kafka-cluster
	CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_SEED=$(CHAOS_SEED) CHAOS_REPORT=$(CURDIR)/.services/chaos-report.txt \
	  $(GO) test -count=1 -v -run 'TestChaosCampaign' -timeout 3h ./integration/chaos/

## dev: the whole system in one process (kfake, chDB, dev issuer) with demo Postgres and sshd.
dev:
	integration/dev.sh
