"""Markers for the suite, set at collection so new tests are marked without anyone remembering to.

- An **area** marker from the file's name (`-m faces`, `-m "generation or validation"`): `AREAS`.
- `e2e` on every test that runs a Beam pipeline, the `facecorpus` command in a subprocess (or a
  whole `run`/`demo`/`faces` in-process), a model pack's networks, the local LLM or the card's figures — found in the test's own code, the fixtures it uses and the helper
  functions of tests/ they call. `-m "not e2e"` is the quick unit suite.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest

#: file name prefix (after `test_`) → area; the first match wins
AREAS: tuple[tuple[str, str], ...] = (
    ("recipe", "house"), ("stage", "house"), ("record_declaration", "house"), ("front", "house"), ("docs", "house"),
    ("install", "house"), ("models", "house"),
    ("sources", "sources"), ("laion", "sources"), ("download", "sources"), ("addresses", "sources"),
    ("politeness", "sources"), ("object_store", "sources"),
    ("image_check", "faces"), ("faces", "faces"),
    ("generation", "generation"), ("prompts", "generation"), ("label_qa", "generation"),
    ("validation", "validation"), ("dedup", "validation"), ("resume", "validation"),
    ("sink", "sinks"), ("pipeline", "sinks"), ("loader", "sinks"),
    ("review", "people"), ("export", "people"),
)
AREA_NAMES = sorted({area for _, area in AREAS} | {"other"})

#: what an end-to-end test does somewhere in its code
E2E_SIGNS = re.compile(
    r"beam\.Pipeline\(|TestPipeline\(|run_cli\(|run_recipe\(|subprocess\.|local_llm_server\(|LocalLLMServer\("
    r"|load_analyzer\(|RunInference\(|FaceStage\(|prompts_until_generation\(|demo_output|labelled_output"
    r"|(?:cli|run_main)\(\[?\s*\"(?:run|demo|faces)\""  # the command in-process: a whole run, or the face models
    r"|_Figures\(|write_card_files\("  # the card's matplotlib figures
)


def area_of(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1].removeprefix("test_").removesuffix(".py")
    return next((area for prefix, area in AREAS if name.startswith(prefix)), "other")


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _test_helper(name: str) -> Any:
    """A function of that name in an already imported tests/ module, if any."""
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("tests.") and inspect.isfunction(getattr(module, name, None)):
            return getattr(module, name)
    return None


def _does_e2e(func: Callable[..., Any], seen: dict[Any, bool], depth: int = 0) -> bool:
    """True when `func`, or a tests/ helper it calls by name (a few levels deep), shows an E2E sign."""
    if func in seen:
        return seen[func]
    seen[func] = False  # a recursive helper does not loop
    src = _source(func)
    found = bool(E2E_SIGNS.search(src))
    if not found and depth < 4:
        names = getattr(func, "__globals__", {})
        for called in set(re.findall(r"\b([A-Za-z_]\w*)\(", src)):
            helper = names.get(called) or _test_helper(called)  # imported inside a function body
            if inspect.isfunction(helper) and helper.__module__.startswith("tests") and _does_e2e(helper, seen, depth + 1):
                found = True
                break
    seen[func] = found
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs a pipeline, the CLI in a subprocess, face models or the local LLM")
    for area in AREA_NAMES:
        config.addinivalue_line("markers", f"{area}: tests of the {area} area (tests/markers.py AREAS)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: dict[Any, bool] = {}
    for item in items:
        item.add_marker(area_of(str(item.path)))
        func = getattr(item, "function", None)
        fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        funcs = [func] if func is not None else []
        funcs += [d.func for defs in fixtures.values() for d in defs if d.func.__module__.startswith("tests")]
        if any(_does_e2e(f, seen) for f in funcs):
            item.add_marker("e2e")
