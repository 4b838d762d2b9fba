# The two commands of the README: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A working Python 3.10 (a pyenv shim that cannot run does not count).
PY310 := $(shell for p in python3.10 $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) /usr/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { command -v $$p; break; }; done)
DEMO_SECONDS ?= 60

.PHONY: demo test lint typecheck pytest test-py310 test-arm64 docs clean check-wheels fixtures

# The distribution is `edge-agent-node` (PyPI's `edge-agent` is another project): a .venv made before
# the rename loses its old copy first.
$(VENV)/.runtime: pyproject.toml
	bash deploy/os-deps.sh runtime
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip uninstall --quiet --yes edge-agent 2>/dev/null || true
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	bash deploy/os-deps.sh test
	$(BIN)/pip install --quiet -e '.[test,ansible]'
	touch $@

# DEMO_SECONDS=N: how long the daemon runs; DEMO_KEEP_BROKER=1: leave the broker and a node running afterwards
# (the demo prints the mosquitto_rr line to ask it and the kill line to stop both).
demo: $(VENV)/.runtime
	bash deploy/os-deps.sh demo
	DEMO_KEEP_BROKER=$(DEMO_KEEP_BROKER) $(BIN)/python deploy/demo/run_demo.py --seconds $(DEMO_SECONDS)

test: lint typecheck pytest test-py310

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test
	$(BIN)/mypy

pytest: $(VENV)/.test
	$(BIN)/python -m pytest

# Jetson (JetPack 6) runs Python 3.10: the unit tests run there too when this machine has one.
test-py310:
ifdef PY310
	$(PY310) -m venv .venv310
	.venv310/bin/pip install --quiet --upgrade pip
	.venv310/bin/pip install --quiet -e '.[test]'
	.venv310/bin/python -m pytest tests/unit -q
else
	@echo "test-py310: no python3.10 on this machine; skipped"
endif

# CI step, not a README command: the aarch64 wheels resolve for Python 3.10 and 3.11 (check-wheels), then
# install the wheel in an emulated Raspberry Pi OS (arm64, qemu-user) from aarch64 wheels alone and check
# it generates the same token ids as this machine. Root; rootfs cached in
# ARM64_CACHE (default /var/cache/edge-agent-arm64). Skips (exit 0) without root or binfmt support.
test-arm64: check-wheels
	VENV=$(abspath $(VENV)) bash deploy/arm64/test_arm64.sh

# Rebuild the tiny test models with torch and transformers (the `export` extra), add q4 goldens from
# transformers.js (Node), and compare them with the committed ones; FIXTURES_WRITE=1 overwrites them instead.
FIXTURE_TMP ?= /tmp/edge-agent-fixtures
fixtures: $(VENV)/.runtime
	$(PYTHON) -m venv .venv-export
	.venv-export/bin/pip install --quiet -e '.[export]'
	[ -d models/.node/node_modules/@huggingface/transformers ] || \
	  ONNXRUNTIME_NODE_INSTALL=skip npm install --silent --no-audit --no-fund --prefix models/.node @huggingface/transformers@4.3.1
	for preset in tiny-gemma4 tiny-gemma4-b; do \
	  .venv-export/bin/python models/build_tiny_gemma4.py --preset $$preset --out $(FIXTURE_TMP)/$$preset || exit 1; \
	  $(BIN)/python models/js_goldens.py $(FIXTURE_TMP)/$$preset || exit 1; \
	  if [ -n "$(FIXTURES_WRITE)" ]; then rm -rf models/$$preset && cp -r $(FIXTURE_TMP)/$$preset models/; \
	  else $(BIN)/python models/compare_fixture.py models/$$preset $(FIXTURE_TMP)/$$preset || exit 1; fi; \
	done
	# video goldens: transformers' video processor needs torchvision (its CPU ops are not used; kept apart)
	[ -d .venv-export/torchvision-0.28 ] || \
	  .venv-export/bin/pip install --quiet --no-deps --target .venv-export/torchvision-0.28 torchvision==0.28.0
	if [ -n "$(FIXTURES_WRITE)" ]; then .venv-export/bin/python models/video_goldens.py; fi

docs: $(VENV)/.runtime
	$(BIN)/python -m edge_agent.config.docs --write README.md

clean:
	rm -rf $(VENV) .venv310 .venv-export .mypy_cache .ruff_cache .pytest_cache build *.egg-info

# Every runtime dependency must install from wheels on the devices: Pi OS (3.11, glibc 2.36) and
# JetPack 6 (3.10, glibc 2.35), aarch64.
AARCH64_TAGS := manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_27_aarch64 manylinux_2_28_aarch64 \
	manylinux_2_31_aarch64 manylinux_2_34_aarch64 manylinux_2_35_aarch64
check-wheels: $(VENV)/.runtime
	for py in 3.10 3.11; do \
	  $(BIN)/pip download --quiet --only-binary=:all: $(addprefix --platform ,$(AARCH64_TAGS)) \
	    --python-version $$py --dest /tmp/edge-agent-wheels-$$py . || exit 1; \
	  echo "aarch64 / Python $$py: all runtime dependencies resolve to wheels"; \
	done
