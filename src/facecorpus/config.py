"""What every area's recipe section is built on: a strict pydantic base, path resolution and the
execution-only mark.

Each area declares its own section beside its code (sources/config.py, download/config.py,
image_config.py, faces/config.py, generation/config.py, validation/config.py, sinks/config.py,
runners.py); recipe.py only composes them. These modules import pydantic and nothing heavy (no Beam,
no models), so loading a recipe stays cheap.

A field that changes how a run executes but not what it writes (a timeout, a thread count, the
runner) carries the `EXECUTION_ONLY` mark on its annotation::

    timeout_s: Annotated[float, EXECUTION_ONLY] = Field(default=120.0, gt=0)

`identity(section)` leaves marked fields out at any depth; the recipe's sha256, and so the resume
fingerprint, is computed from it. A marked field holding a section leaves the whole section out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from .records import PositiveInt

__all__ = ["EXECUTION_ONLY", "Config", "PositiveInt", "identity", "is_execution_only", "is_remote", "resolve_path"]


class ExecutionOnly:
    """The mark of a recipe field that changes how a run executes, not what it writes."""

    def __repr__(self) -> str:
        return "EXECUTION_ONLY"


#: put it in a field's Annotated[...] to leave the field out of the recipe's identity
EXECUTION_ONLY = ExecutionOnly()


class Config(BaseModel):
    """Base of every recipe section: unknown keys are mistakes (`extra="forbid"`)."""

    model_config = ConfigDict(extra="forbid")


def is_execution_only(info: FieldInfo) -> bool:
    """True when the field carries the `EXECUTION_ONLY` mark."""
    return any(isinstance(m, ExecutionOnly) for m in info.metadata)


def identity(section: BaseModel) -> dict[str, Any]:
    """The section's settings as JSON (`model_dump(mode="json")`) without its execution-only fields,
    at any depth (sections inside sections, lists and dicts of sections)."""
    return _prune(section, section.model_dump(mode="json"))


def _prune(section: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    fields = type(section).model_fields
    out: dict[str, Any] = {}
    for name, value in data.items():
        info = fields.get(name)
        if info is not None and is_execution_only(info):
            continue
        out[name] = _prune_value(getattr(section, name, None), value)
    return out


def _prune_value(obj: Any, value: Any) -> Any:
    if isinstance(obj, BaseModel) and isinstance(value, dict):
        return _prune(obj, value)
    if isinstance(obj, list | tuple) and isinstance(value, list):
        return [_prune_value(o, v) for o, v in zip(obj, value, strict=True)]
    if isinstance(obj, dict) and isinstance(value, dict):
        return {k: _prune_value(o, v) for (k, v), o in zip(value.items(), obj.values(), strict=True)}
    return value


def is_remote(path: str) -> bool:
    """True for URLs (gs://, s3://, http://…), which are used as they are."""
    return "://" in path


def resolve_path(path: str, base: Path) -> str:
    """A recipe path made absolute: relative paths are relative to the recipe file's folder."""
    if is_remote(path):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())
