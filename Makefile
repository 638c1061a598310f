# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
# Both create .venv, install torch (pinned CPU build, first) and the project, pull the embedded
# models, then run. Re-running is fast: set-up is skipped while pyproject.toml is unchanged.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMACPP_STAMP := $(VENV)/.llamacpp
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
TORCH_SPEC ?= torch==2.13.0
MODELS ?= smollm2-135m-instruct minilm-l6

.PHONY: setup llamacpp models demo test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"
	touch $(STAMP)

# The optional llama.cpp backend (built from source by pip the first time, ~5 min; cached after).
llamacpp: $(LLAMACPP_STAMP)

$(LLAMACPP_STAMP): $(STAMP)
	$(PIP) install -e ".[dev,llamacpp]"
	touch $(LLAMACPP_STAMP)

models: setup
	$(BIN)/promptlearning models pull $(MODELS)

demo: models
	$(BIN)/promptlearning demo

test: models llamacpp
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: models llamacpp
	$(PIP) install -e ".[dev,bench,llamacpp]"
	$(BIN)/python benchmarks/load_time.py
	$(BIN)/python benchmarks/scoring_throughput.py
	$(BIN)/python benchmarks/icl_vs_lm_eval.py
	$(BIN)/python benchmarks/self_consistency.py
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis src/*.egg-info
