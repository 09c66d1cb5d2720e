"""The YAML front matter of a dataset card (README.md), the part the Hugging Face Hub reads as metadata.

A card is `---\\n<yaml>\\n---\\n<markdown>`; these helpers split and join the two halves so the run's
card and the export's copy of it share one body while naming different data files.
"""

from __future__ import annotations

from typing import Any

import yaml

_FENCE = "---"


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, markdown body) of a card; ({}, text) when it has no front matter."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != _FENCE:
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() == _FENCE:
            meta = yaml.safe_load("\n".join(lines[1:i])) or {}
            if not isinstance(meta, dict):
                return {}, text
            return meta, "\n".join(lines[i + 1:]).lstrip("\n")
    return {}, text


def join_front_matter(meta: dict[str, Any], body: str) -> str:
    """A card with `meta` as its YAML front matter (keys in the given order) above `body`."""
    if not meta:
        return body
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n")
    return f"{_FENCE}\n{head}\n{_FENCE}\n\n{body}"


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for n rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                         (1_000_000_000, "100M<n<1B")):
        if n < limit:
            return label
    return "1B<n<10B"
