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


def recorded_recipe_yaml(info: dict[str, Any]) -> str:
    """The recipe text a run.json recorded (older outputs: its canonical JSON as YAML)."""
    if info.get("recipe_yaml"):
        return str(info["recipe_yaml"])
    if info.get("recipe_json"):
        import yaml

        return yaml.safe_dump(info["recipe_json"], sort_keys=False)
    return "# recipe: not recorded in run.json"


def recorded_card_plots(info: dict[str, Any]) -> bool:
    """Whether the run asked for the card's figures (`output.card.plots`; outputs older than the key: yes)."""
    recorded = info.get("recipe_json") or {}
    return bool(recorded.get("output", {}).get("card", {}).get("plots", True))


def stats_run_section(info: dict[str, Any]) -> dict[str, Any]:
    """stats.json's `run` section for a job finished without its launcher: run.json minus the recipe itself."""
    return {k: v for k, v in info.items() if k not in ("recipe_json", "recipe_yaml")}
