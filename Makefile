# Two commands on a fresh machine: `make run` serves on 127.0.0.1:8000; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast setup setup-test setup-gpu run-gpu lint loadtest bench bench-smoke gpu-pack clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[models]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[models,test]'
	touch $@

setup: $(VENV)/.installed
	$(BIN)/gateway models pull

setup-test: $(VENV)/.installed-test
	$(BIN)/gateway models pull

# On an NVIDIA GPU outside Docker (driver R570+): the CUDA 12 runtimes from PyPI, alone.
setup-gpu: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[models,gpu]'
	$(BIN)/pip uninstall -q -y onnxruntime
	$(BIN)/pip install -q --force-reinstall --no-deps 'onnxruntime-gpu==1.26.0'
	$(BIN)/gateway models pull
	-$(BIN)/gateway doctor

run-gpu: setup-gpu
	$(BIN)/gateway serve --host $(HOST) --port $(PORT)

run: setup
	$(BIN)/gateway serve --host $(HOST) --port $(PORT)

test: setup-test
	$(BIN)/python -m pytest

# The quick subset: every test not marked slow, still one real round trip per front door
# (HTTP speech and transcription, Wyoming, Realtime). `make test` stays the whole suite (CI).
test-fast: setup-test
	$(BIN)/python -m pytest -m "not slow"

lint: setup-test
	$(BIN)/ruff check gateway benchmarks tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache

# Load test (locust, headless): starts the gateway on a free loopback port, writes CSV + HTML to
# results/loadtest-<timestamp>/, exits non-zero when a threshold fails. `make loadtest DURATION=30s`
DURATION ?= 60s
USERS ?= 3
loadtest: setup-test
	DURATION="$(DURATION)" USERS="$(USERS)" PYTHON=$(BIN)/python scripts/loadtest.sh

# Benchmarks: writes docs/benchmarks.md and docs/img/*.png (about 15 min on 2 cores).
bench: setup-test
	$(BIN)/gateway bench report

# The whole report in quick mode (tiny inputs, few runs) into a temporary folder, then a check
# that every section, table, plot and raw figure came out; not part of `make test` (minutes).
bench-smoke: setup-test
	$(BIN)/python scripts/bench_smoke.py

# The project's lent GPU machine (no network, 64 MiB a transfer): pack this checkout, the wheels
# its image lacks and the models into .gpu-pack/ chunks with ../shared/gpu/pack.sh. The derived
# Kokoro files (timed 92 MB, float 325 MB, fp16 273 MB) are not packed: `gateway models pull
# kokoro` derives them there (docs/benchmarks-gpu.md: measuring the fp16 variant).
GPU_PACK_EXTRA := lameenc emoji markdown-it-py mdurl linkify-it-py uc-micro-py num2words jiwer \
	rapidfuzz click
gpu-pack: setup-test
	rm -rf /tmp/gpu-pack-models && mkdir -p /tmp/gpu-pack-models
	d=$$($(BIN)/python -c "from gateway.config import Settings; print(Settings().models.dir)") && \
	  cp -r "$$d/kokoro" "$$d/whisper-base" /tmp/gpu-pack-models/
	rm -f /tmp/gpu-pack-models/kokoro/model.gpu.onnx /tmp/gpu-pack-models/kokoro/model.timed.onnx \
	  /tmp/gpu-pack-models/kokoro/model.fp16.onnx
	GATEWAY_MODELS__DIR=/tmp/gpu-pack-models PACK_EXTRA="$(GPU_PACK_EXTRA)" ../shared/gpu/pack.sh kokoro whisper-base
