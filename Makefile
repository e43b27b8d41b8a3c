# netk8s: `sudo make demo` and `sudo make test` set up a fresh Debian/Ubuntu machine and run.
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
NETK8S := $(VENV)/bin/netk8s
# pytest exits 5 when it collected no test: that fails every target below, as any non-zero exit does.
PYTEST := $(PY) -m pytest -q -p no:cacheprovider --durations=25
TESTS ?= tests

.PHONY: install demo test test-unit test-integration test-root test-vm test-stress lint bench bench-quick bench-deps clean

install:
	@bash scripts/install-deps.sh

demo: install
	@bash scripts/demo.sh

# the whole suite but the VM-node labs (marker vmlab: `make test-vm`); tests/root/test_vm.py's one guest stays in
test: install
	@$(PYTEST) $(TESTS) -m "not vmlab" $(PYTEST_ARGS)

# the pure tests only: no process, no socket, no namespace (tests/conftest.py enforces it), seconds long
test-unit: install
	@$(PYTEST) $(TESTS) -m "not integration and not root" $(PYTEST_ARGS)

test-integration: install
	@$(PYTEST) $(TESTS) -m "integration and not root" $(PYTEST_ARGS)

test-root: install
	@$(PYTEST) tests/root -m "not vmlab" $(PYTEST_ARGS)

# labs of QEMU VM nodes (lab up --node-runtime vm / netns,vm): 2 labs, ~15-40 min under TCG
test-vm: install
	@$(PYTEST) tests/root -m vmlab $(PYTEST_ARGS)

# the privileged Services (every proxy mode), overlay and DNS suites 3 times in a row under a CPU burner per core;
# suites at nice 0, level with the burners (at nice 10 a round took hours on 2 cores; scripts/stress.py, docs/reliability.md)
test-stress: install
	@$(PY) scripts/stress.py $(STRESS_ARGS)

lint: install
	@$(PY) -m ruff check netk8s tests
	@$(PY) -m mypy netk8s/model netk8s/controller netk8s/store

# Benchmarks (scripts/bench): install the tools they measure against, run, rewrite BENCHMARKS.md + docs/bench/*.png.
bench-deps:
	@bash scripts/install-deps.sh --bench

bench: bench-deps
	@$(PY) -m scripts.bench --out BENCHMARKS.md

bench-quick: bench-deps
	@$(PY) -m scripts.bench --quick --out BENCHMARKS.md

clean:
	@$(NETK8S) clean || true
