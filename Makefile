# Two commands matter: `make test` and `make demo`. Everything installs into .venv from constraints.txt.
# Every install is hash-checked (`--require-hashes`): pip and setuptools from constraints-build.txt first, then
# the locked set, then the project itself without dependencies or build isolation (so no unpinned build backend
# is fetched). `make lock` regenerates all the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
PIP_FLAGS := --disable-pip-version-check --no-input -q

.PHONY: help venv checkov-venv controlplane lint format typecheck test unit chaos bench crds generate demo clean lock

help:
	@echo "make test   - create .venv, install, build (or reuse) the control plane, run ruff, mypy and pytest"
	@echo "make controlplane - build etcd, kube-apiserver, kube-controller-manager from source (cached outside the tree)"
	@echo "make demo   - run the operator against the local sandbox and show an AWSIntegration reaching Ready"
	@echo "make crds   - regenerate crds/, chart copy, deploy/, Argo CD files, docs/reference.md, the operator IAM policy"
	@echo "make lint   - ruff and mypy (the packages and tests/) only"
	@echo "make chaos  - the chaos suite (faults, crashes, bad input, deletion, two replicas); CHAOS_SIZE=20"
	@echo "make bench  - the benchmark against the sandbox and the floor; BENCH_N=200 (up to 1000)"
	@echo "make lock   - regenerate the hashed lock files (constraints*.txt) with uv; LOCK_FLAGS=--upgrade"

# Recreated from scratch when a lock changes, so no package of an older lock lingers; a change to pyproject.toml
# alone only reinstalls the project (entry points, package data).
LOCKED := $(VENV)/.installed-lock
$(LOCKED): constraints.txt constraints-build.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --require-hashes -r constraints-build.txt
	$(BIN)/python -m pip install $(PIP_FLAGS) --require-hashes -r constraints.txt
	touch $@

$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

venv: $(STAMP)

# checkov gets its own venv: its pins (boto3, packaging, networkx) cannot resolve together with constraints.txt.
# Recreated from scratch when the lock changes, so no package of an older lock lingers.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-checkov
CHECKOV_VERSION := 3.3.30
$(CHECKOV_STAMP): constraints-checkov.txt constraints-build.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install $(PIP_FLAGS) --require-hashes -r constraints-build.txt
	$(CHECKOV_VENV)/bin/python -m pip install $(PIP_FLAGS) --require-hashes -r constraints-checkov.txt
	$(CHECKOV_VENV)/bin/python -m pip check
	touch $@

checkov-venv: $(CHECKOV_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator sandbox codegen tests
	$(BIN)/ruff format --check operator sandbox codegen tests
	$(MAKE) --no-print-directory typecheck

# pytest imports each test directory as its own root (its helpers are top-level modules, and several directories
# have a conftest.py), so mypy checks tests/ the same way: one directory at a time, with that directory (and the
# e2e harness, which tests/chaos imports) on its path. Strict, like the packages (pyproject.toml).
TEST_DIRS = $(sort $(patsubst %/,%,$(dir $(wildcard tests/*/*.py tests/*/*/*.py))))
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy tests/conftest.py
	@for dir in $(TEST_DIRS); do \
		echo "mypy $$dir"; MYPYPATH=$$dir:tests/e2e $(BIN)/mypy $$dir || exit 1; \
	done

format: $(STAMP)
	$(BIN)/ruff format operator sandbox codegen tests
	$(BIN)/ruff check --fix operator sandbox codegen tests

# etcd, kube-apiserver and kube-controller-manager from sandbox/controlplane/ (Go >= 1.26, checksums from the
# committed go.sum files), into ~/.cache/opsramp-aws-operator/controlplane/<key>/bin; reused while the key holds.
controlplane: $(STAMP)
	$(BIN)/python -m opsramp_sandbox.controlplane build

# Most of the suite waits (on the operator, a control plane, a subprocess), so a few workers overlap the waits even
# on 2 cores. tests/conftest.py groups the tests and orders the groups (longest first). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
test: lint checkov-venv controlplane
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder)

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Faults, crashes, bad input, deletion and two replicas against the sandbox. CHAOS_SIZE scales it (resources).
CHAOS_SIZE ?= 20
chaos: $(STAMP) controlplane
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

# DEMO_ARGS=--organization: a three-account AWS Organization onboarded by one resource (docs/organizations.md).
demo: $(STAMP)
	$(BIN)/python -m opsramp_sandbox.demo $(DEMO_ARGS)

# Regenerate every lock with hashes (run by hand, commit the result): constraints-build.txt (pip, setuptools),
# constraints.txt (the project with [test], resolved for any Python 3.11.x), constraints-checkov.txt and
# constraints-lock.txt (uv itself, the resolver used here). Pins already in a lock are kept unless
# LOCK_FLAGS=--upgrade (or --upgrade-package NAME) says otherwise.
LOCK_VENV := .lock-venv
UV_VERSION := 0.13.8
LOCK_FLAGS ?=
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--custom-compile-command 'make lock' $(LOCK_FLAGS)
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install $(PIP_FLAGS) --require-hashes -r constraints-lock.txt
	echo 'uv==$(UV_VERSION)' | $(UV_COMPILE) - -o constraints-lock.txt
	printf 'pip\nsetuptools\n' | $(UV_COMPILE) - -o constraints-build.txt
	$(UV_COMPILE) pyproject.toml --extra test -c constraints-build.txt -o constraints.txt
	echo 'checkov==$(CHECKOV_VERSION)' | $(UV_COMPILE) - -c constraints-build.txt -o constraints-checkov.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(LOCK_VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
