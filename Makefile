# shorthop — every target installs what it needs; `make test` works on a machine with only
# Python >= 3.11, Go >= 1.26 and access to PyPI and the Go module proxy.
# SHORTHOP_KUBERNETES_VERSION=1.35 (or 1.35.4, v1.35.4) builds and tests another supported
# Kubernetes release than the newest; `make versions` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
PYTEST_ARGS ?=
LINT_PATHS := $(wildcard operator tests e2e bench chaos conftest.py)

.PHONY: dev test unit fuzz mutation lint crds controlplane versions cluster-up cluster-down demo bench chaos clean

dev: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "shorthop needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	@touch $@

# Builds the control plane from Go sources (cached), lints, then runs every test: unit, property,
# integration against the real apiserver, and the end-to-end suite.
test: dev controlplane lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: dev
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Nightly-style exploration: every property and fuzz test of tests/unit with fresh random seeds
# and ten times the examples (the `fuzz` hypothesis profile, tests/hypothesis_profiles.py);
# failures are kept in .hypothesis/ and replayed first next time. `make test` replays a fixed
# sample of the same tests. See docs/testing.md.
fuzz: dev
	SHORTHOP_HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/unit -m hypothesis $(PYTEST_ARGS)

# Mutation check of the pure core, bounded in time (MUTATION_SECONDS); see docs/testing.md.
mutation: dev
	bash tests/mutation.sh

lint: dev
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The CRD is generated from the pydantic models (one source of truth); a test fails on drift.
crds: dev
	$(PY) -m shorthop.api.crd crds charts/shorthop/crds

controlplane: dev
	$(PY) -m e2e.controlplane build

versions: dev
	$(PY) -m e2e.controlplane versions

cluster-up: dev
	$(PY) -m e2e.controlplane up

cluster-down: dev
	$(PY) -m e2e.controlplane down

demo: dev
	$(PY) -m e2e.demo

bench: dev controlplane
	$(PY) -m bench

# Fault injection, races, fuzzing and a soak at full size (~30-40 min on two cores); writes
# docs/reliability.md. `make test` runs the same checks at a small size.
chaos: dev controlplane
	$(PY) -m chaos

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
