"""LLaMA-Factory's side of the ShareGPT export: the `dataset_info.json` entry and how to train on it.

LLaMA-Factory (0.9.x) reads a multimodal ShareGPT record's images from the column its entry names
under `columns.images` (a list of paths per record, one per `<image>` token) and resolves relative
paths against its `media_dir` training argument, which defaults to `dataset_dir` — the folder holding
`dataset_info.json`. So the export writes image paths relative to that folder and the entry needs no
path at all.

FairFaceGPT (idiap/facellm) published its entry with a singular `image` column and an `image_root`
key; LLaMA-Factory knows neither, finds no images and rejects every record ("The number of images does
not match the number of <image> tokens"). `--format fairfacegpt` still writes that layout, for
readers of FairFaceGPT's own tooling, and says so.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ..errors import UserError

#: the dataset name an export writes into dataset_info.json unless --name says otherwise
DEFAULT_NAME = "facecorpus_dataset"
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "assistant"}

FAIRFACEGPT_WARNING = (
    "warning: --format fairfacegpt writes FairFaceGPT's published entry (an 'image' column and "
    "'image_root'); LLaMA-Factory reads neither and rejects every record of it. "
    "To train with LLaMA-Factory use --format sharegpt."
)


def llamafactory_entry(data_file: Path) -> dict[str, Any]:
    """The dataset_info.json entry LLaMA-Factory's loader reads the sharegpt export with."""
    return {
        "file_name": data_file.name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "images"},
        "tags": dict(SHAREGPT_TAGS),
    }


def fairfacegpt_entry(data_file: Path, image_root: str) -> dict[str, Any]:
    """The entry in FairFaceGPT's own shape (idiap/facellm data/dataset_info.json)."""
    return {
        "formatting": "sharegpt",
        "file_name": data_file.name,
        "columns": {"messages": "conversations", "image": "image"},
        "split": "train",
        "tags": dict(SHAREGPT_TAGS),
        "image_root": image_root,
    }


def write_dataset_info(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace one entry of a dataset_info.json, keeping the others (e.g. LLaMA-Factory's own)."""
    info: dict[str, Any] = {}
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} exists but is not valid JSON ({e.msg} at line {e.lineno}); fix or remove it") from e
        if not isinstance(info, dict):
            raise UserError(f"{path} exists but is not a JSON object of dataset entries; fix or remove it")
    info[name] = entry
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def training_arguments(name: str, dataset_dir: str, media_dir: str) -> str:
    """The overrides (`key=value`, as `llamafactory-cli train CONFIG.yaml` takes them) that point a
    training run at the export; the same keys go into the YAML config as `key: value`."""
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in
                    (("dataset", name), ("dataset_dir", dataset_dir), ("media_dir", media_dir)))
