# Two entry points for a fresh machine (README "Quick start"):
#   make demo   installs everything into .venv and runs `edgekd demo`
#   make test   installs everything (plus test tools and the Debian packages the tests use),
#               then runs ruff, the android_demo Java core's JUnit tests and pytest
# Everything installs from PyPI; nothing is downloaded at run time.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgekd-installed
DEMO_ARGS ?=

.PHONY: install system-deps demo test lint java-test clean native native-aarch64

install: $(STAMP)

# Order matters: torch + torchvision first (pinned as a pair), then edgekd with every extra ([all]: executorch,
# tflite, onnx2tf, devices, text), then onnx2tf with --no-deps (its metadata pins old numpy/TF/onnx
# that conflict with executorch; what it imports is already in the onnx2tf extra).
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[all,test]'
	$(BIN)/pip install --no-deps onnx2tf==1.29.24 simple-onnx-processing-tools==1.1.32
	touch $(STAMP)

demo: install
	$(BIN)/edgekd demo $(DEMO_ARGS)

system-deps:
	bash scripts/system-deps.sh

# The native C++ runner (runtimes/cpp, runtimes/README.md "Native runner"): build/native/<arch>/.
# Both work from a fresh clone (no build/ folder, no wheel cache). NATIVE_PYTHON=/path/to/python builds
# against an existing environment (its executorch and ai-edge-litert) instead of installing .venv first.
NATIVE_PYTHON ?=
NATIVE_PY := $(or $(NATIVE_PYTHON),$(BIN)/python)

native: $(if $(NATIVE_PYTHON),,install)
	bash runtimes/cpp/build.sh --arch x86_64 --python $(NATIVE_PY)

native-aarch64: $(if $(NATIVE_PYTHON),,install)
	bash runtimes/cpp/build.sh --arch aarch64 --python $(NATIVE_PY)

lint: install
	$(BIN)/ruff check edgekd runtimes benchmarks tests

java-test: system-deps
	$(MAKE) -C android_demo test

test: lint java-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache edgekd_runs demo_out
