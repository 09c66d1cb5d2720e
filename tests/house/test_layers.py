"""The areas (the sub-packages of facecorpus) import each other without circles, except the ones listed
here with the reason they are still there. A new circle fails this test; removing a listed one fails
it too, so the list stays true.

Three kinds of module are layers rather than area code and are left out: `cli/` and `cli.py` (the commands, above
every area), `config.py` (the recipe's declarations, read by every area) and `layout.py` (names every
area may read — output/layout.py, the output folder's — which must import no area itself, so it can
close no circle: checked below). Imports inside function bodies count: they are dependencies all the same.

An import through a top-level module (`facecorpus/<name>.py`, not an area) counts as well: an area
module importing `stage.py`, which imported `generation/`, would be that area needing the generator
all the same, so a circle closed that way fails too. There only imports that run are followed: those
under `if TYPE_CHECKING:` are types for the checker, never executed.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import facecorpus

PACKAGE = Path(facecorpus.__file__).parent
LAYER_MODULES = ("cli", "config")
#: layers below every area: read by all, importing none
LEAF_MODULES = ("layout",)

#: circles that remain, each with the modules that close it and why
KNOWN_CIRCLES: dict[tuple[str, ...], str] = {}


def _area(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 3 or not (PACKAGE / parts[1]).is_dir() or parts[1] in LAYER_MODULES or parts[-1] in LAYER_MODULES + LEAF_MODULES:
        return None
    return parts[1]


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"), f)
            for f in PACKAGE.rglob("*.py")]


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (never executed)."""
    return {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for stmt in node.body for n in ast.walk(stmt)}


def imports_of(module: str, f: Path, types_too: bool = True) -> set[str]:
    """The facecorpus modules (and names in them) that `module`, in file `f`, imports (`types_too`
    False: not those under `if TYPE_CHECKING:`)."""
    package = module if f.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(f.read_text(encoding="utf-8"))
    skipped = set() if types_too else _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            named = ".".join([*base, *([node.module] if node.module else [])])
            found |= {named, *(f"{named}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {t for t in found if t.startswith("facecorpus.") and _exists(t)}


def _top_level(module: str) -> bool:
    """A module of the package's top (`facecorpus.stage`), not an area's."""
    parts = module.split(".")
    return len(parts) == 2 and parts[0] == "facecorpus" and not (PACKAGE / parts[1]).is_dir()


def area_edges(direct: dict[str, set[str]], run: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """area → area it imports → 'module -> … -> module' lines, from each module's imports (`direct`:
    all of them; `run`: those that execute, followed through top-level modules)."""
    edges: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))

    def owner(target: str) -> str:
        return target if target in run else target.rsplit(".", 1)[0]

    for module, targets in direct.items():
        a = _area(module)
        if not a:
            continue
        for target in targets:
            b = _area(target)
            if b and b != a:
                edges[a][b].add(f"{module} -> {target}")
        # through top-level modules, as far as they lead (imports that run only)
        todo = [(owner(t), [module, owner(t)]) for t in run.get(module, ()) if _top_level(owner(t))]
        seen = {path[-1] for _, path in todo}
        while todo:
            top, path = todo.pop()
            for target in run.get(top, ()):
                b, nxt = _area(target), owner(target)
                if b and b != a:
                    edges[a][b].add(" -> ".join([*path, target]))
                elif _top_level(nxt) and nxt not in seen:
                    seen.add(nxt)
                    todo.append((nxt, [*path, nxt]))
    return edges


def area_imports() -> dict[str, dict[str, set[str]]]:
    """area → area it imports → 'module -> module' lines (directly or through top-level modules)."""
    modules = _modules()
    return area_edges({m: imports_of(m, f) for m, f in modules}, {m: imports_of(m, f, types_too=False) for m, f in modules})


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


def test_an_import_through_a_top_level_module_counts():
    """validation → stage.py → generation is validation importing generation; a TYPE_CHECKING import is not."""
    direct = {"facecorpus.validation.assemble": {"facecorpus.stage.WorkItem"},
              "facecorpus.stage": {"facecorpus.records", "facecorpus.generation.outcome"},
              "facecorpus.records": {"facecorpus.faces.given"},
              "facecorpus.generation.llm_stage": {"facecorpus.validation.text_quality"}}
    run = {**direct, "facecorpus.stage": {"facecorpus.records"}}  # generation.outcome: for the type checker only
    edges = area_edges(direct, run)
    assert dict(edges["validation"]) == {"faces": {"facecorpus.validation.assemble -> facecorpus.stage -> "
                                                   "facecorpus.records -> facecorpus.faces.given"}}
    assert circles(edges) == set()
    edges = area_edges(direct, {**run, "facecorpus.stage": direct["facecorpus.stage"]})
    assert circles(edges) == {("generation", "validation")}


def test_leaf_layers_import_no_area():
    """A leaf layer (output/layout.py) is left out of the circles because it imports no area: keep it so."""
    leaves = [(m, f) for m, f in _modules() if m.rsplit(".", 1)[-1] in LEAF_MODULES]
    assert any(m == "facecorpus.output.layout" for m, _ in leaves)
    for module, f in leaves:
        areas = {_area(t) for t in imports_of(module, f)} - {None}
        assert not areas, f"{module} imports areas {sorted(areas)}: a layout module must import none"


def test_no_area_imports_the_commands():
    """The `cli/` package is left out of the circles because it sits above every area: none imports it."""
    found = [(m, t) for m, f in _modules() if _area(m) for t in imports_of(m, f)
             if t == "facecorpus.cli" or t.startswith("facecorpus.cli.")]
    assert any(m.startswith("facecorpus.cli.") for m, _ in _modules())
    assert not found, f"areas import the commands: {found}"
