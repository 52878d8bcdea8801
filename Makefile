# Every target installs what it needs into .venv on a fresh clone (idempotent; quick when done).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Poll mode: a re-export (`make export`, `python -m export --checkpoint PATH`) is served without a restart.
TRITON_ARGS ?= --model-control-mode=poll --repository-poll-secs=5

.PHONY: help install export triton demo test system-deps lint bench-triton clean

help:
	@echo "make export        export MTCNN + classifier to ONNX into model_repository/ (only what changed)"
	@echo "make triton        start the local Triton server in the foreground (ports 8000/8001/8002)"
	@echo "make serve         local Triton + the gateway on 127.0.0.1:5050 in the foreground (Ctrl-C stops both)"
	@echo "make demo          send a generated sample video through the gateway's /api/v1/predict (starts what is needed)"
	@echo "make bench-gateway p50/p95 of a full gateway predict vs the decode+encode floor"
	@echo "make test          run the test suite (starts its own Triton on free ports; apt-installs chromium and"
	@echo "                   redis-server when root and missing: scripts/system-deps.sh)"
	@echo "make lint          ruff + mypy"
	@echo "make bench-triton  latency/throughput of the deepfake_detector ensemble"
	@echo "make perf-analyzer NVIDIA perf_analyzer against the ensemble (own venv .perf-venv/; not part of make test)"
	@echo "make loadtest      Locust (headless) against a local stack it starts; LOADTEST_ARGS=... (loadtests/README.md)"
	@echo "make soak          30 min of Locust at a steady rate: failures and RSS growth of every process (SOAK_ARGS=...)"
	@echo "make chaos         faults under load, 2 gateway replicas + Redis + Triton: jobs lost, recovery, RSS (CHAOS_ARGS=...)"
	@echo "make deploy-check  validate Dockerfiles, docker-compose.yml, k8s/ manifests and the served model repository"

$(STAMP): pyproject.toml constraints.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[export,local,clients,gateway,dev,loadtest]'
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	touch $@

install: $(STAMP)

export: install
	$(PY) -m export

triton: export
	$(PY) -m triton_runtime $(TRITON_ARGS)

.PHONY: serve bench-gateway bench-provenance chaos
serve: export
	$(PY) -m gateway --with-triton

demo: export
	$(PY) -m gateway.demo

bench-gateway: export
	$(PY) -m benchmarks.gateway_bench

# Faults under load (benchmarks/chaos.py): kill -9 of Triton, Redis, a gateway replica; a frozen Triton. ~4 min.
CHAOS_ARGS ?=
chaos: system-deps export
	$(PY) -m benchmarks.chaos $(CHAOS_ARGS)

bench-provenance: install  # C2PA read time, signed and unsigned 10 s clip
	$(PY) -m benchmarks.provenance_bench

# Debian's chromium and redis-server first (scripts/system-deps.sh: apt-get when root; else says which tests skip).
.PHONY: system-deps
system-deps:
	@bash scripts/system-deps.sh

test: system-deps export
	$(PY) -m pytest

# Deployment files (docs/deploy.md), validated offline: kustomize + kubernetes-validate, the Compose schema, hadolint.
.PHONY: deploy-check
deploy-check: export
	$(PY) -m pytest tests/deploy -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy deepfake_core export training triton_runtime clients benchmarks gateway loadtests

bench-triton: export
	$(PY) -m benchmarks.triton_bench

# NVIDIA perf_analyzer (inside the tritonclient 2.41.0 wheel) in a venv of its own, so the project's tritonclient
# stays as it is; it needs Debian's libb64-0d and libcudart.so.12 (nvidia-cuda-runtime-cu12), even on CPU.
PERF_VENV := .perf-venv
PERF_STAMP := $(PERF_VENV)/.installed
PERF_ARGS ?=
$(PERF_STAMP):
	dpkg -s libb64-0d >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libb64-0d)
	test -x $(PERF_VENV)/bin/python || $(PYTHON) -m venv $(PERF_VENV)
	$(PERF_VENV)/bin/pip install -q 'tritonclient==2.41.0' 'nvidia-cuda-runtime-cu12==12.9.79'
	touch $@

.PHONY: perf-analyzer
perf-analyzer: export $(PERF_STAMP)
	$(PY) -m benchmarks.perf_analyzer --perf-venv $(PERF_VENV) $(PERF_ARGS)

# Load tests (loadtests/README.md): loopback only, they stop by themselves; results under results/<label>-<time>/.
LOADTEST_ARGS ?=
SOAK_ARGS ?=
.PHONY: loadtest soak
loadtest: export
	$(PY) -m loadtests --users 4 --spawn-rate 1 --duration 3m --heatmap on $(LOADTEST_ARGS)

soak: export
	$(PY) -m loadtests --label soak --duration 30m --users 4 --spawn-rate 0.2 --classes gateway,triton --pacing 30 \
		--heatmap on --memory-interval 30 --rss-baseline 2m --max-rss-growth 10 $(SOAK_ARGS)

clean:
	rm -rf .triton results test-artifacts
	find model_repository -name model.onnx -delete
