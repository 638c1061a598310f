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
# pytest-xdist workers for `make test`, one torch thread each (tests/conftest.py); a file stays on one worker
TEST_WORKERS ?= 2

.PHONY: setup llamacpp bench-deps promtool browser models demo test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"
	touch $(STAMP)

# The optional llama.cpp backend, built from source the first time (~5 min) into a wheel kept in
# $(WHEELHOUSE). The build is portable (AVX2, no -march=native): a native build on these Xeons
# uses AMX tiles, which the VM does not enable, and crashes in `ldtilecfg` (general protection fault).
LLAMACPP_VERSION := 0.3.36
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
WHEELHOUSE ?= $(HOME)/.cache/promptlearning/wheels/llama-cpp-python-$(LLAMACPP_VERSION)-avx2

llamacpp: $(LLAMACPP_STAMP)

$(LLAMACPP_STAMP): $(STAMP)
	if ! ls $(WHEELHOUSE)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  rm -rf $(WHEELHOUSE).tmp && \
	  CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-cache-dir \
	    "llama-cpp-python==$(LLAMACPP_VERSION)" -w $(WHEELHOUSE).tmp && \
	  rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); fi
	$(PIP) install --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-*.whl
	$(PIP) install -e ".[dev,llamacpp]"
	touch $(LLAMACPP_STAMP)

# lm-evaluation-harness and psutil, for the benchmarks and the tests that compare against lm-eval.
BENCH_STAMP := $(VENV)/.bench

bench-deps: $(BENCH_STAMP)

$(BENCH_STAMP): $(LLAMACPP_STAMP)
	$(PIP) install -e ".[dev,bench,llamacpp]"
	touch $(BENCH_STAMP)

models: setup
	$(BIN)/promptlearning models pull $(MODELS)

demo: models
	$(BIN)/promptlearning demo

# promtool (Debian's prometheus package, unpacked, not installed) for the alert-rule tests of deploy/;
# without apt the tests that need it say so and skip.
PROMTOOL := $(HOME)/.cache/promptlearning/tools/promtool

promtool: $(PROMTOOL)

$(PROMTOOL):
	@command -v apt-get >/dev/null || { echo "no apt-get: the alert-rule tests will be skipped"; exit 0; }; \
	tmp=$$(mktemp -d) && cd $$tmp && apt-get download prometheus >/dev/null 2>&1 && \
	dpkg-deb -x prometheus_*.deb x && mkdir -p $(dir $(PROMTOOL)) && cp x/usr/bin/promtool $(PROMTOOL).tmp && \
	mv $(PROMTOOL).tmp $(PROMTOOL); rm -rf $$tmp; test -x $(PROMTOOL) || echo "promtool not fetched: the alert-rule tests will be skipped"

# Chromium (Debian's package) for the web UI's browser tests: Playwright drives it and downloads no browser.
# Without apt and root (or sudo) the browser tests say so and skip.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "no apt-get: the browser tests will be skipped"; exit 0; }; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  $$sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $$sudo apt-get update >/dev/null 2>&1 && $$sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } || \
	  echo "Chromium not installed: the browser tests will be skipped"; }

test: models bench-deps promtool browser
	$(BIN)/ruff check src tests benchmarks
	PROMTOOL=$(PROMTOOL) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: models bench-deps
	$(BIN)/python benchmarks/load_time.py
	$(BIN)/python benchmarks/scoring_throughput.py
	$(BIN)/python benchmarks/icl_vs_lm_eval.py
	$(BIN)/python benchmarks/self_consistency.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/serve_batching.py
	$(BIN)/python benchmarks/serve_vs_llamacpp.py
	$(BIN)/python benchmarks/serve_overload.py
	$(BIN)/python benchmarks/serve_chaos.py
	$(BIN)/python benchmarks/lm_eval_via_server.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis src/*.egg-info
