# Tally's front door. Two commands on a fresh Debian 12 machine:
#   make setup   # every Debian package the project needs (idempotent)
#   make test    # configure + build + every test (unit, integration, fuzz smoke, TSan)
# See README.md for the rest.

SHELL := /bin/bash
BUILD       ?= build
BUILD_TYPE  ?= RelWithDebInfo
JOBS        ?= $(shell nproc)
FUZZ_SECONDS ?= 20
CTEST_ARGS  ?=
CMAKE_FLAGS ?=

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages (every build and test tool). The offline deploy checks also
# need node + npm (Debian's nodejs/npm when missing) and two npm packages,
# pinned in deploy/validate/package-lock.json and installed into
# deploy/validate/node_modules (git-ignored).
PACKAGES := build-essential cmake ninja-build pkg-config git \
  librdkafka-dev librocksdb-dev rocksdb-tools libabsl-dev prometheus-cpp-dev \
  libsimdjson-dev libprotobuf-dev protobuf-compiler libyaml-cpp-dev libcivetweb-dev \
  libgtest-dev libgmock-dev libbenchmark-dev kcat libssl-dev curl \
  clang clang-format clang-tidy libclang-rt-14-dev prometheus

.PHONY: setup setup-packages setup-node configure build test unit integration faults run bench lint format fuzz fuzz-smoke \
        asan tsan clean

setup: setup-packages setup-node

setup-packages:
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(PACKAGES) 2>/dev/null \
	    | awk '$$NF=="installed"{print $$1}' | sort > /tmp/tally-installed.$$$$; \
	  for p in $(PACKAGES); do grep -qx "$$p" /tmp/tally-installed.$$$$ || echo $$p; done; \
	  rm -f /tmp/tally-installed.$$$$); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing:" $$missing; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	else echo "setup: all packages present"; fi

# npm ci only when deploy/validate/package-lock.json changed since the last
# install (a stamp holds its checksum), so a second `make setup` does nothing.
VALIDATE_DIR := deploy/validate
setup-node:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "setup: installing: nodejs npm"; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends nodejs npm; \
	fi
	@want=$$(sha256sum $(VALIDATE_DIR)/package-lock.json | cut -d' ' -f1); \
	if [ "$$(cat $(VALIDATE_DIR)/node_modules/.tally-lock-sha256 2>/dev/null)" = "$$want" ]; then \
	  echo "setup: npm packages present ($(VALIDATE_DIR)/node_modules)"; \
	else \
	  echo "setup: npm ci in $(VALIDATE_DIR)"; \
	  (cd $(VALIDATE_DIR) && npm ci --no-audit --no-fund --loglevel=error) && \
	  echo "$$want" > $(VALIDATE_DIR)/node_modules/.tally-lock-sha256; \
	fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Every test: ctest (unit + integration + deploy checks), then the fuzz smoke
# run, the TSan run of the concurrent components and the ASan+UBSan run of
# every unit test (about 20 minutes in all on 2 cores).
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)
	$(MAKE) fuzz-smoke
	$(MAKE) tsan
	$(MAKE) asan

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# Fault scenarios at full size (tests/faults: kill -9, SIGTERM restarts,
# scaling, broker trouble, readiness); `make test` runs their short sizes.
faults: build
	cd $(BUILD) && FAULTS_FULL=1 ctest --output-on-failure -L faults

run: build
	BUILD=$(BUILD) tools/run.sh

bench: build
	BUILD=$(BUILD) bench/run.sh

LINT_FILES = $(shell git ls-files '*.cc' '*.h')
lint: configure
	clang-format --dry-run --Werror $(LINT_FILES)
	clang-tidy -p $(BUILD) --quiet $(filter %.cc,$(filter processor/% tools/%,$(LINT_FILES)))

format:
	clang-format -i $(LINT_FILES)

# libFuzzer targets need clang; they live in their own build tree.
build-fuzz/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTALLY_FUZZ=ON -DTALLY_BUILD_TESTS=OFF -DTALLY_BUILD_BENCH=OFF

fuzz: build-fuzz/build.ninja
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh build-fuzz

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

asan:
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTALLY_SANITIZE=address,undefined \
	  -DTALLY_BUILD_BENCH=OFF
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS) -L unit

# TSan over the components that share lock-free state between threads.
TSAN_LABEL ?= concurrency
tsan:
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALLY_SANITIZE=thread \
	  -DTALLY_BUILD_BENCH=OFF
	cmake --build build-tsan -j $(JOBS) --target tsan_targets
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L $(TSAN_LABEL) \
	  --no-tests=error

clean:
	rm -rf $(BUILD) build-fuzz build-asan build-tsan
