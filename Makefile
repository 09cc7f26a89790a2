# Two commands do everything:  `make demo`  and  `make test`.
# Both create ./.venv on first use. Torch is pinned to the CPU build explicitly
# (TORCH_SPEC); set TORCH_SPEC/TORCH_INDEX to install another build elsewhere.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_OUT ?= outputs/demo

.PHONY: setup test lint demo bench docs clean

setup: $(VENV)/.installed

# Each step says what it does; pip prints what it collects (no -q: a first setup takes
# a minute or two, mostly torch).
$(VENV)/.installed: pyproject.toml
	@echo "==> [1/4] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] upgrading pip"
	$(PY) -m pip install --upgrade pip
	@echo "==> [3/4] installing $(TORCH_SPEC)$(if $(TORCH_INDEX), from $(TORCH_INDEX)) (the largest download)"
	$(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	@echo "==> [4/4] installing lam-envs (editable) with its [dev] extra"
	$(PY) -m pip install -e '.[dev]'
	touch $@
	@echo "==> setup done: use $(VENV)/bin/python; make test, make demo"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

# One process per core (at most 4), whole test files per process so that a file's fixtures
# are built once; TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

demo: setup
	$(PY) -m lam_models.demo --out $(DEMO_OUT)

bench: setup
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/collect_throughput.py
	$(PY) benchmarks/train_linear.py
	$(PY) benchmarks/train_vq.py
	$(PY) benchmarks/train_throughput.py

# The documentation site (Sphinx, furo, MyST: docs/conf.py) into docs/_build/html, warnings
# as errors; installs the [docs] extra first, as bench does [bench].
docs: setup
	$(PY) -m pip install -q -e '.[dev,docs]'
	rm -rf docs/_generated
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "==> docs built: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache docs/_build docs/_generated
