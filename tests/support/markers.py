"""Markers for the suite, set at collection so new tests are marked without anyone remembering to.

- An **area** marker from the file's folder, tests/<area>/ (`-m faces`, `-m "generation or validation"`):
  `AREAS`.
- `e2e` on every test that runs a Beam pipeline (or a PortableRunner), the `facecorpus` command in a
  subprocess (or a whole `run`/`demo`/`faces` in-process), a model pack's networks, the local LLM, the
  card's figures, a loopback S3 server or a fresh venv — found in the test's own code, the fixtures it
  uses and the helper functions of tests/ they call. A test the signs miss can say `@pytest.mark.e2e`
  (registered in pyproject.toml). `-m "not e2e"` is the quick unit suite (`make test-quick`).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

#: the folders of tests/ by area (a test file's folder is its area marker); `support` holds helpers
AREAS: tuple[str, ...] = ("house", "cli", "sources", "faces", "generation", "validation", "output", "review", "export",
                          "scaleout")
AREA_NAMES = sorted({*AREAS, "other"})

#: what an end-to-end test does somewhere in its code
E2E_SIGNS = re.compile(
    r"beam\.Pipeline\(|TestPipeline\(|run_cli\(|cli_in_process\(|run_recipe\(|subprocess\.|local_llm_server\(|LocalLLMServer\("
    r"|load_analyzer\(|RunInference\(|FaceStage\(|prompts_until_generation\(|demo_output|labelled_output"
    r"|(?:cli|run_main)\(\[?\s*\"(?:run|demo|faces)\""  # the command in-process: a whole run, or the face models
    r"|_Figures\(|write_card_files\("  # the card's matplotlib figures
    r"|PortableRunner|ThreadedMotoServer\(|mock_aws|venv\.create\(|EnvBuilder\("  # runner, S3 server, fresh venv
)


def area_of(path: str) -> str:
    """The area folder a test file lies in (tests/<area>/test_x.py); `other` for a file directly in tests/."""
    parts = Path(path).parts
    folder = parts[-2] if len(parts) >= 2 else ""
    return folder if folder in AREAS else "other"


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _test_helpers() -> dict[str, Any]:
    """Every function of the tests/ modules imported so far, by name: where a helper that a test imports
    inside its body comes from. Built once per collection (scanning sys.modules per lookup cost ~1 min
    of CPU per collection)."""
    helpers: dict[str, Any] = {}
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("tests.") and module is not None:
            for name, value in vars(module).items():
                if inspect.isfunction(value) and value.__module__.startswith("tests"):
                    helpers.setdefault(name, value)
    return helpers


def _does_e2e(func: Callable[..., Any], seen: dict[Any, bool], helpers: dict[str, Any], depth: int = 0) -> bool:
    """True when `func`, or a tests/ helper it calls by name (a few levels deep), shows an E2E sign."""
    if func in seen:
        return seen[func]
    seen[func] = False  # a recursive helper does not loop
    src = _source(func)
    found = bool(E2E_SIGNS.search(src))
    if not found and depth < 4:
        names = getattr(func, "__globals__", {})
        for called in set(re.findall(r"\b([A-Za-z_]\w*)\(", src)):
            helper = names.get(called) or helpers.get(called)  # imported inside a function body
            if inspect.isfunction(helper) and helper.__module__.startswith("tests") and _does_e2e(helper, seen, helpers, depth + 1):
                found = True
                break
    seen[func] = found
    return found


def pytest_configure(config: pytest.Config) -> None:
    # e2e itself is registered in pyproject.toml (so `@pytest.mark.e2e` by hand passes --strict-markers too)
    for area in AREA_NAMES:
        config.addinivalue_line("markers", f"{area}: tests of the {area} area (the folder tests/{area}/)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: dict[Any, bool] = {}
    helpers = _test_helpers()
    for item in items:
        item.add_marker(area_of(str(item.path)))
        func = getattr(item, "function", None)
        fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        funcs = [func] if func is not None else []
        funcs += [d.func for defs in fixtures.values() for d in defs if d.func.__module__.startswith("tests")]
        if any(_does_e2e(f, seen, helpers) for f in funcs):
            item.add_marker("e2e")
