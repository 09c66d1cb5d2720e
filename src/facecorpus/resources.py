"""Files that ship with the package: prompts, schemas, pipelines (recipes).

In a source checkout they live at the repository's top level; in a wheel they are copied to
`facecorpus/_data/` (see pyproject's force-include). Dataflow workers only have the wheel.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_REPO = _PKG.parent.parent


def data_dir(name: str) -> Path:
    """Directory of a shipped resource kind: 'prompts', 'schemas' or 'pipelines'."""
    for candidate in (_PKG / "_data" / name, _REPO / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"facecorpus resource folder '{name}' is missing from the installation")
