"""run.json: what made an output — the recipe, its fingerprint, every attempt and the runner that ran
it. Written atomically at the start of each attempt (output/resume.py), read by resume, `validate`,
`stats --write` and `finalize`.
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from ..storage import read_text, write_atomically
from .layout import RUN_FILE


def read_run_info(out: str) -> dict[str, Any] | None:
    """run.json of `out` as a dict; None when there is none (or it is not an object); UserError when it
    is not JSON (it records what made the output: never guessed)."""
    path = FileSystems.join(out, RUN_FILE)
    if not FileSystems.exists(path):
        return None
    try:
        info = json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path} is not valid JSON; it records what made this output and cannot be guessed") from None
    return info if isinstance(info, dict) else None


def write_run_info(out: str, info: dict[str, Any]) -> None:
    write_atomically(FileSystems.join(out, RUN_FILE), (json.dumps(info, indent=2, sort_keys=False) + "\n").encode())
