# Each target installs what is missing first, so `make demo` and `make test` work on a
# fresh Debian/Ubuntu machine with Node 20.
SHELL := /bin/bash
SYSTEM_PACKAGES ?= build-essential python3 librocksdb-dev rocksdb-tools openssl tmux python3-grpcio python3-grpc-tools python3-protobuf jq etcd-server etcd-client
BENCH_PACKAGES ?= redis-server redis-tools
STAMP := node_modules/.shardsnap-installed
NATIVE := native/build/Release/shardsnap_rocksdb.node native/build/Release/shardsnap_segments.node
# Build native code against the headers of the running Node when they are installed
# beside it, so node-gyp never has to download them.
NODE_PREFIX := $(shell node -p "require('path').resolve(process.execPath, '../..')")
NODEDIR_FLAG := $(if $(wildcard $(NODE_PREFIX)/include/node/node_api.h),--nodedir=$(NODE_PREFIX),)

.PHONY: all deps system-deps build demo test fuzz test-native-asan bench lint format typecheck clean

all: build

system-deps:
	@bash scripts/setup-system.sh $(SYSTEM_PACKAGES)

$(STAMP): package.json package-lock.json
	npm_config_build_from_source=true npm ci --no-audit --no-fund $(NODEDIR_FLAG)
	@touch $@

deps: system-deps $(STAMP)

$(NATIVE) &: $(STAMP) native/binding.gyp $(wildcard native/src/*.cc native/src/*.h)
	npm run --silent build:native -- $(NODEDIR_FLAG)

build: deps $(NATIVE)
	npm run --silent gen
	npx tsc -p tsconfig.json

demo: build
	./bin/shardsnap demo

test: build
	npx ava

# The fuzz properties of `make test`, with many more runs (FUZZ_RUNS, FUZZ_SEED to vary).
fuzz: build
	FUZZ_RUNS=$${FUZZ_RUNS:-20000} npx ava --timeout 30m test/fuzz.test.ts

# The native bindings rebuilt with AddressSanitizer and UndefinedBehaviorSanitizer (GCC's),
# and the tests that drive them run against that build; any report fails the run.
ASAN_DIR := native/build-asan
NODE_GYP := $(dir $(realpath $(shell command -v npm)))../node_modules/node-gyp/bin/node-gyp.js
NATIVE_TESTS := test/rocksdb-native.test.ts test/store-rocksdb.test.ts test/rocksdb-store-ingest.test.ts \
	test/rocksdb-store-differential.test.ts test/rocksdb-resources.test.ts test/store-memory.test.ts \
	test/memory-keyspace.test.ts
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer

test-native-asan: build
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -r native/binding.gyp native/src $(ASAN_DIR)/
	ln -s ../../node_modules $(ASAN_DIR)/node_modules
	cd $(ASAN_DIR) && CXXFLAGS="$(SANITIZE)" LDFLAGS="-fsanitize=address,undefined" \
		node $(NODE_GYP) rebuild $(NODEDIR_FLAG) -j 2
	nm -D $(ASAN_DIR)/build/Release/shardsnap_rocksdb.node | grep -q __asan_
	SHARDSNAP_ADDON_DIR=$(CURDIR)/$(ASAN_DIR)/build/Release \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		npx ava $(NATIVE_TESTS)

bench: build
	@bash scripts/setup-system.sh $(BENCH_PACKAGES)
	node --expose-gc --max-semi-space-size=64 dist/bench/run.js

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
