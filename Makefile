# Each target installs what is missing first, so `make demo` and `make test` work on a
# fresh Debian/Ubuntu machine with Node 20.
SHELL := /bin/bash
SYSTEM_PACKAGES ?= build-essential python3
BENCH_PACKAGES ?= redis-server redis-tools
STAMP := node_modules/.shardsnap-installed

.PHONY: all deps system-deps build demo test bench lint format typecheck clean

all: build

system-deps:
	@bash scripts/setup-system.sh $(SYSTEM_PACKAGES)

$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: system-deps $(STAMP)

build: deps
	npm run --silent gen
	npx tsc -p tsconfig.json

demo: build
	./bin/shardsnap demo

test: build
	npx ava

bench: build
	@bash scripts/setup-system.sh $(BENCH_PACKAGES)
	node --expose-gc dist/bench/run.js

lint: build
	npx eslint .
	npx prettier --check .

typecheck: deps
	npm run --silent gen
	npx tsc -p tsconfig.json --noEmit

format: deps
	npx prettier --write .

clean:
	rm -rf dist src/generated native/build
