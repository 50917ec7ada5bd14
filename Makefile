# Two commands matter: `make test` and `make demo`. Everything installs into .venv from constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
PIP_FLAGS := --disable-pip-version-check --no-input -q

.PHONY: help venv checkov-venv lint format typecheck test unit chaos bench crds generate demo clean lock

help:
	@echo "make test   - create .venv, install, run ruff, mypy and pytest"
	@echo "make demo   - run the operator against the local sandbox and show an AWSIntegration reaching Ready"
	@echo "make crds   - regenerate crds/, chart copy, deploy/, Argo CD files, docs/reference.md, the operator IAM policy"
	@echo "make lint   - ruff and mypy only"
	@echo "make chaos  - the chaos suite (faults, crashes, bad input, deletion, two replicas); CHAOS_SIZE=20"
	@echo "make bench  - the benchmark against the sandbox and the floor; BENCH_N=200 (up to 1000)"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade "pip>=24"
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[test]'
	touch $@

venv: $(STAMP)

# checkov gets its own venv: its pins (boto3, packaging, networkx) cannot resolve together with constraints.txt.
# Recreated from scratch when the lock changes, so no package of an older lock lingers.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-checkov
$(CHECKOV_STAMP): constraints-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install $(PIP_FLAGS) -c constraints-checkov.txt checkov==3.3.30
	touch $@

checkov-venv: $(CHECKOV_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator sandbox codegen tests
	$(BIN)/ruff format --check operator sandbox codegen tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format operator sandbox codegen tests
	$(BIN)/ruff check --fix operator sandbox codegen tests

test: lint checkov-venv
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Faults, crashes, bad input, deletion and two replicas against the sandbox. CHAOS_SIZE scales it (resources).
CHAOS_SIZE ?= 20
chaos: $(STAMP)
	CHAOS_SIZE=$(CHAOS_SIZE) $(BIN)/pytest tests/chaos -p no:cacheprovider

# The benchmark (docs/performance.md): writes bench/results/latest.json and latest.md. Not part of `make test`.
BENCH_N ?= 200
bench: $(STAMP)
	$(BIN)/python -m opsramp_sandbox.bench --n $(BENCH_N) $(BENCH_ARGS)

crds generate: $(STAMP)
	$(BIN)/python -m opsramp_codegen.crdgen --write
	$(BIN)/python hack/sync-manifests.py
	$(BIN)/python -m opsramp_codegen.refdoc --write
	$(BIN)/python -m opsramp_codegen.iam_permissions --write

demo: $(STAMP)
	$(BIN)/python -m opsramp_sandbox.demo

# Refresh constraints.txt from a clean resolve of pyproject.toml (run by hand, commit the result).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) '.[test]'
	.lock-venv/bin/python -m pip freeze --exclude opsramp-aws-operator | sed '/^-e /d' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
