# The two commands of the README: `make demo` and `make test`. Both set up .venv first
# (scripts/setup_env.sh: idempotent, seconds when nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python
export AMENT_PREFIX_PATH := $(abspath $(VENV))

.PHONY: setup test test-fast demo bench train-demo clean-shm

setup:
	@bash scripts/setup_env.sh

## make test: set up if needed, then run the whole test suite (CI runs exactly this)
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## make test-fast: skip the tests marked slow
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## make demo: set up if needed, then run the main job (see README "Quick start")
demo: setup
	@bash scripts/run_demo.sh

## make train-demo: retrain the shipped demo model from scratch (~2 h on 2 CPU cores; seed 0)
train-demo: setup
	@bash scripts/train_demo.sh

## make bench: run every benchmark under bench/ and print their figures
bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## remove shared-memory files left by killed DDS processes
clean-shm:
	-$(VENV)/bin/fastdds shm clean
