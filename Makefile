# netk8s: `sudo make demo` and `sudo make test` set up a fresh Debian/Ubuntu machine and run.
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
NETK8S := $(VENV)/bin/netk8s

.PHONY: install demo test test-unit test-root lint bench bench-quick bench-deps clean

install:
	@bash scripts/install-deps.sh

demo: install
	@bash scripts/demo.sh

test: install
	@$(PY) -m pytest tests -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-unit: install
	@$(PY) -m pytest tests/unit -q -p no:cacheprovider

test-root: install
	@$(PY) -m pytest tests/root -q -p no:cacheprovider

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
