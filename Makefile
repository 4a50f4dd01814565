# lesion-lightning — `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CLI := $(VENV)/bin/lesion-lightning
# Tests run on 2 worker processes (this machine has 2 cores); override with PYTEST_WORKERS=0.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS))

.PHONY: help install test test-slow test-all demo bench lint clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch comes from this machine's local wheels (pip only; see README).
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the package (editable) with test extras

test: install ## run the default test suite (< 15 min on 2 cores)
	$(PYTEST) tests

test-slow: install ## run only the slow tests
	$(PYTEST) tests -m slow

test-all: install ## run every test, slow ones included
	$(PYTEST) tests -m ''

demo: install ## train + evaluate on the embedded default data (real HAM10000 sample, else synthetic)
	$(CLI) demo

# Paper tables (experiments/tables/): the paper profile with DATA_ROOT=/path/to/dataset, else the smoke
# profile on the embedded sample data. Any table: make reproduce TABLE=<id> or make reproduce-<id>.
.PHONY: reproduce reproduce-list reproduce-table5
DATA_ROOT ?=
TABLE ?=
REPRODUCE_ARGS ?=
REPRODUCE_PROFILE = $(if $(DATA_ROOT),--profile paper --data-root $(DATA_ROOT),--profile smoke)

reproduce: install ## regenerate a paper table: make reproduce TABLE=lanet-table5 [DATA_ROOT=...]; also make reproduce-<id>
	@test -n "$(TABLE)" || { echo "usage: make reproduce TABLE=<id>   (ids: make reproduce-list)"; exit 2; }
	$(CLI) reproduce $(TABLE) $(REPRODUCE_PROFILE) $(REPRODUCE_ARGS)

reproduce-list: install ## list every paper-table spec (experiments/tables/)
	$(CLI) reproduce --list

reproduce-table5: install ## LANET Table 5 (HAM10000; paper profile with DATA_ROOT=..., else smoke on the embedded data)
	$(CLI) reproduce lanet-table5 $(REPRODUCE_PROFILE) $(REPRODUCE_ARGS)

reproduce-%: install
	$(CLI) reproduce $* $(REPRODUCE_PROFILE) $(REPRODUCE_ARGS)

bench: install ## run the benchmarks in benchmarks/ (ratios, real-data Dice; SCSONET_PEER_DIR=... for the peer speed ratio)
	$(PY) benchmarks/cache_benchmark.py
	$(PY) benchmarks/lightning_overhead.py
	$(PY) benchmarks/predict_throughput.py
	$(PY) benchmarks/onnx_vs_eager.py
	$(PY) benchmarks/predict_backends.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/data_scale.py
	$(PY) benchmarks/real_accuracy.py
	$(if $(SCSONET_PEER_DIR),$(PY) benchmarks/peer_speed.py --peer-dir $(SCSONET_PEER_DIR),@echo "peer_speed: SKIPPED: set SCSONET_PEER_DIR=/path/to/SCSONet (git clone https://github.com/Haoyu1Chen/SCSONet)")

efficiency-table: install ## SLSNet Table 5 / LANET Table 4 efficiency table -> results/bench (BENCH_ARGS=--device cuda ...)
	$(CLI) bench --models slsnet,lanet,unet,unetplusplus,unet3plus --sizes 64,128,224,256 $(BENCH_ARGS)

cross-eval-table9: install ## LANET Table 9 cross-dataset jobs -> results/cross_eval/lanet_table9 (CROSS_EVAL_ARGS=--data-roots ...)
	$(CLI) cross-eval --jobs experiments/cross_eval/lanet_table9.yaml $(CROSS_EVAL_ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf runs results .cache .pytest_cache wandb lightning_logs
