"""The areas (the sub-packages of facecorpus) import each other without circles, except the ones listed
here with the reason they are still there. A new circle fails this test; removing a listed one fails
it too, so the list stays true.

Two kinds of module are layers rather than area code and are left out: `cli.py` (the commands, above
every area) and `config.py` (the recipe's declarations, read by every area). Imports inside function
bodies count: they are dependencies all the same.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import facecorpus

PACKAGE = Path(facecorpus.__file__).parent
LAYER_MODULES = ("cli", "config")

#: circles that remain, each with the modules that close it and why
KNOWN_CIRCLES = {
    ("sinks", "validation"): "validation/resume.py is the output folder's state (issue 14's output package "
                             "takes it, and the readers of sinks/run_files.py, out of both)",
    ("generation", "validation"): "validation/resume.py fingerprints the generator's prompts (issue 14); "
                                  "generation's judging reuses validation/refusals.py's text rules",
    ("review", "sinks"): "the card shows the review summary and the annotation agreement uses the reviewers' "
                         "kappa, while review/queue.py reads the output through sinks/run_files.py (issue 14)",
}


def _area(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 3 or not (PACKAGE / parts[1]).is_dir() or parts[-1] in LAYER_MODULES:
        return None
    return parts[1]


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def area_imports() -> dict[str, dict[str, set[str]]]:
    """area → area it imports → 'module -> module' lines."""
    edges: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for f in PACKAGE.rglob("*.py"):
        module = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        package = module if f.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                named = ".".join([*base, *([node.module] if node.module else [])])
                targets = [named, *(f"{named}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if not target.startswith("facecorpus.") or not _exists(target):
                    continue
                a, b = _area(module), _area(target)
                if a and b and a != b:
                    edges[a][b].add(f"{module} -> {target}")
    return edges


def circles(edges: dict[str, dict[str, set[str]]]) -> set[tuple[str, ...]]:
    """Every simple circle among the areas, as a tuple starting at its smallest name."""
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in edges.get(node, {}):
            if nxt == start:
                i = path.index(min(path))
                found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path:
                walk(start, nxt, [*path, nxt])

    for area in list(edges):
        walk(area, area, [area])
    return found


def test_no_new_circle_among_the_areas():
    edges = area_imports()
    assert {"sources", "generation", "sinks", "review"} <= set(edges)  # the walk sees the package
    found = circles(edges)
    new = {c: [sorted(edges[a][b])[:3] for a, b in zip(c, c[1:] + c[:1], strict=True)]
           for c in found - set(KNOWN_CIRCLES)}
    assert not new, f"areas import each other in a circle (module -> module): {new}"
    gone = set(KNOWN_CIRCLES) - found
    assert not gone, f"no longer circles: remove them from KNOWN_CIRCLES: {sorted(gone)}"


def test_a_circle_is_found():
    edges = {"a": {"b": {"x"}}, "b": {"c": {"y"}}, "c": {"a": {"z"}}, "d": {"a": {"w"}}}
    assert circles(edges) == {("a", "b", "c")}
