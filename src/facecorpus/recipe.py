"""Recipes: the YAML that says what a run reads, computes and writes.

Each area declares its own section beside its code (`facecorpus.config` says where); this module only
composes them into `Recipe`, computes the recipe's identity from the fields' execution-only marks, and
loads files: `load_recipe(path, overrides)` applies `--set dotted.key=value` overrides, validates with
pydantic and turns any mistake into one `UserError` line naming the file, the key and what is wrong.
Every key is documented in docs/recipes.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from .config import EXECUTION_ONLY, Config, identity
from .errors import UserError
from .faces.config import FacesConfig
from .generation.config import GenerationConfig
from .image_config import ImageConfig
from .runners import RunnerConfig
from .sinks.config import OutputConfig
from .sources.config import Source
from .textfiles import decode_text
from .validation.config import ValidationConfig


class Recipe(Config):
    """A whole recipe: its sources, then one section per stage."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="The recipe's name; in every record's provenance and the card.")
    description: str = Field(default="", description="Free text for the dataset card.")
    sources: list[Source] = Field(min_length=1, description="Read in parallel and flattened into one stream (see `sources[]`).")
    image: ImageConfig = Field(default_factory=ImageConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    runner: Annotated[RunnerConfig, EXECUTION_ONLY] = Field(default_factory=RunnerConfig)

    def canonical_json(self) -> str:
        """The recipe as canonical JSON, without the fields marked `EXECUTION_ONLY` (they change how a
        run executes, not what it writes): a run moved from the local runner to Dataflow, or resumed
        with more concurrency, another model-store path or a longer timeout, keeps its identity."""
        return json.dumps(identity(self), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """The recipe's identity: sha256 of `canonical_json()` (recorded in run.json and every sample)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def source_identity(source: BaseModel) -> dict[str, Any]:
    """A source's settings as JSON, without its execution-only fields (download pacing)."""
    return identity(source)


# --------------------------------------------------------------------------------------------- loading


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; list items are addressed by index (`sources.0.split`)."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected dotted.key=value")
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise UserError(f"--set {assignment!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {dotted}: '{part}' is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {dotted}: '{'.'.join(parts[:i])}' is a value, not a section")


def _format_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    out: list[str] = []
    node: Any = data
    for part in loc:
        # pydantic adds the discriminator's value (e.g. 'fairface') to the location of union members
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue
        out.append(f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part)))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return "".join(out) or "(top level)"


def validate_recipe(data: Any, origin: str, base_dir: Path) -> Recipe:
    if not isinstance(data, dict):
        raise UserError(f"recipe {origin}: expected a mapping of keys at the top level")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = _format_loc(tuple(err["loc"]), data)
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] not in ("extra_forbidden", "missing") and "input" in err:
            got = err["input"]
            msg += f" (got {got!r})" if not isinstance(got, dict | list) else ""
        more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise UserError(f"recipe {origin}: {where}: {msg}{more}") from None
    for src in recipe.sources:
        src.resolve_paths(base_dir)
    recipe.validation.holdout.resolve_paths(base_dir)
    return recipe


def read_recipe_text(p: Path) -> str:
    """The recipe file's text (UTF-8, or what its BOM says); one UserError line when it cannot be read."""
    if p.is_dir():
        raise UserError(f"recipe {p} is a folder; give the path of the recipe's YAML file")
    if not p.is_file():
        raise UserError(f"recipe file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"recipe {p}: cannot be read ({e.strerror})") from None
    return decode_text(data, "utf-8", f"recipe {p}", "save the recipe as UTF-8")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML file, apply overrides, validate. Raises UserError with one clear line."""
    p = Path(path)
    try:
        data = yaml.safe_load(read_recipe_text(p))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {p}:{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        data = {}
    for assignment in overrides or []:
        if isinstance(data, dict):
            apply_override(data, assignment)
    return validate_recipe(data, str(p), p.resolve().parent)
