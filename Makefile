# One machine-wide build directory, so CI, `make run` and later sessions reuse one build.
export CARGO_TARGET_DIR ?= $(if $(filter 0,$(shell test -w /var/cache && echo 0)),/var/cache/catalog/target,$(HOME)/.cache/catalog/target)
SHELL := /bin/bash

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the local stack (installing what is missing) and the services; Ctrl-C stops
	@scripts/run.sh

.PHONY: stop
stop: ## Stop what `make run` started
	@scripts/stop.sh

.PHONY: stack
stack: ## Start only the local stack: PostgreSQL, Redis, tansu, storage directory
	@scripts/stack.sh up

.PHONY: migrate
migrate: stack ## Apply the migrations in schema/ to POSTGRES_URL
	@cargo run --quiet --bin api -- migrate

.PHONY: observe
observe: ## A local Prometheus with the SLO and alert rules, scraping `make run`'s services
	@scripts/observe.sh

.PHONY: rules
rules: ## promtool: check the alert rules and run their unit tests (part of `make test`)
	@scripts/check-rules.sh

.PHONY: test
test: stack ## Set up the stack and run every test
	@scripts/test.sh

.PHONY: build-deps
build-deps: ## Install the C libraries the build needs when missing (OpenSSL, libaom, libclang)
	@scripts/build-deps.sh

.PHONY: lint
lint: build-deps ## cargo fmt --check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format the code
	cargo fmt --all

.PHONY: openapi
openapi: ## Regenerate api/openapi.json (the committed OpenAPI document) from the code
	@UPDATE_OPENAPI=1 cargo test --quiet -p api --lib openapi

.PHONY: schemas
schemas: ## Regenerate events/schemas/*.json and events/asyncapi.json from the Rust event types
	@UPDATE_SCHEMAS=1 cargo test --quiet -p events committed

.PHONY: latency
latency: ## Median POST-to-compressed latency for a 1 MP JPEG (needs `make run`)
	@scripts/measure-latency.sh 20

.PHONY: load-drill
load-drill: ## 5,000 products whose images fail, burst at once: drain rate, broker responsiveness (needs `make run`; minutes)
	@scripts/load-drill.sh $${COUNT:-5000}

.PHONY: feed-latency
feed-latency: ## Commit-to-record latency of the products topic (needs `make run`)
	@scripts/measure-feed-latency.sh 50

.PHONY: bench
bench: stack ## Criterion benchmarks of GET /products/{id}: cache hit, miss, baseline (docs/benchmarks.md)
	cargo bench -p benches --bench get_product

.PHONY: bench-images
bench-images: build-deps ## The processor's ladder beside libvips's on six camera photos (downloaded once): CPU time, bytes, SSIM (docs/benchmarks.md)
	@scripts/bench-images.sh

.PHONY: contracts
contracts: ## Validate api/openapi.json, events/asyncapi.json, deploy/ offline (part of `make test`)
	@scripts/check-contracts.sh

.PHONY: up
up: ## docker compose: Kafka (KRaft), PostgreSQL, Redis, MinIO, OTel collector, Jaeger, api, processor
	docker compose -f deploy/docker-compose.yml up --build --detach --wait

.PHONY: down
down: ## Stop the compose stack and delete its volumes
	docker compose -f deploy/docker-compose.yml down --volumes --remove-orphans
