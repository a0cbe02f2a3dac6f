# nas-attn: two commands on a fresh machine.
#   make demo   install what is needed, then run the quickstart on the embedded dataset
#   make test   install what is needed, then run the whole test suite
# Everything is installed into .venv; torch is pinned to the CPU build this project is tested on.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.stamp-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export RAY_AUTH_MODE ?= disabled
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-fast lint bench gpu-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,postgres]"
	rm -f $(VENV)/.stamp-*
	touch $@

DEMO_OUT ?= runs/quickstart-demo

# The quickstart: a real search (Optuna + Ray Tune, Pareto early stopping) on the embedded
# cluttered-digits data, then its dashboard and an export of the knee architecture.
demo: venv
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/nas-attn search studies/quickstart.yaml --out $(DEMO_OUT)
	$(VENV)/bin/nas-attn dashboard $(DEMO_OUT) -o $(DEMO_OUT)/dashboard.html
	$(VENV)/bin/nas-attn export $(DEMO_OUT) --pick knee

test: venv
	bash scripts/test-setup.sh
	$(VENV)/bin/ruff check nas_attn tests benchmarks
	$(PY) -m pytest -q --durations=15

test-fast: venv
	$(PY) -m pytest -q -m "not ray and not browser and not postgres and not slow"

lint: venv
	$(VENV)/bin/ruff check nas_attn tests benchmarks

# The benchmarks behind docs/benchmarks.md (run on a quiet machine; about 27 minutes).
bench: venv
	$(PY) benchmarks/bench_profile.py
	$(PY) benchmarks/bench_module_overhead.py
	$(PY) benchmarks/bench_train_throughput.py
	$(PY) benchmarks/bench_runner_overhead.py --trials 24
	$(PY) benchmarks/bench_sampler_storage.py
	$(PY) benchmarks/bench_quickstart_memory.py
	RAY_AUTH_MODE=disabled $(PY) benchmarks/bench_promotion.py --trials 40
	$(PY) benchmarks/tabular/replay.py --reps 20 --trials 300 --workers 2 --es 3,1 2,4 --gp-reps 0

# The GPU check (benchmarks/gpu/): CUDA tests, train_spec against a bare loop, a real search at
# 1/2/4/8 trials per GPU, time per epoch at 50,000 images; at most 8 minutes on one GPU, one
# JSON file in benchmarks/gpu/results/. It needs no venv: on a GPU machine it uses the
# preinstalled torch and the wheels of benchmarks/gpu/prepare.sh (.whl/).
gpu-check:
	bash benchmarks/gpu/check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
