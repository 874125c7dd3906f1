# Two commands on a fresh machine: `make serve` and `make test` (they set up .venv themselves).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup serve test test-all lint bench demo clean

setup: $(STAMP)

$(STAMP): setup.py constraints.txt $(wildcard requirements/*.txt)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=23" "setuptools>=77" wheel
	$(BIN)/pip install --quiet -c constraints.txt -r requirements/dev.txt
	$(BIN)/pip install --quiet -c constraints.txt --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The demo checkpoint goes to $$M1_ASCEND_DEMO_DIR or ~/.cache/m1-ascend/demo (skipped when complete).
demo: $(STAMP)
	$(BIN)/m1-ascend build-demo

serve: demo
	$(BIN)/m1-ascend serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

lint: $(STAMP)
	$(BIN)/ruff check m1_ascend kernels tests benchmarks deploy

clean:
	rm -rf $(VENV) build *.egg-info
