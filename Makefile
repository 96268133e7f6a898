# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
OUT ?= cellweave_demo

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch goes in first, pinned, so nothing later lets pip choose a (CUDA) torch.
$(VENV)/.core: pyproject.toml constraints.txt | $(PY)
	$(PIP) torch
	$(PIP) -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) -e ".[dev]"
	@touch $@

demo: $(VENV)/.core
	$(VENV)/bin/cellweave demo --out $(OUT)

test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(VENV)/.dev
	$(PY) benchmarks/bench_graph.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
