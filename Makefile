# Two commands do everything:  `make demo`  and  `make test`.
# Both create ./.venv on first use. Torch is pinned to the CPU build explicitly
# (TORCH_SPEC); set TORCH_SPEC/TORCH_INDEX to install another build elsewhere.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_OUT ?= outputs/demo

.PHONY: setup test lint demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

demo: setup
	$(PY) -m lam_models.demo --out $(DEMO_OUT)

bench: setup
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/collect_throughput.py
	$(PY) benchmarks/train_linear.py
	$(PY) benchmarks/train_vq.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
