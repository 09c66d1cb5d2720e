"""Sample keys: deterministic, unique, WebDataset-safe (letters, digits, '_' and '-'; no dots)."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(dataset: str, source_id: str) -> str:
    """Key for a source item: a readable slug of the id plus 8 hex of its sha1, so distinct ids never collide
    after slugging (`val/1.jpg` and `val_1.jpg` differ)."""
    stem = source_id.rsplit(".", 1)[0] if "." in source_id.rsplit("/", 1)[-1] else source_id
    slug = _UNSAFE.sub("_", f"{dataset}_{stem}").strip("_")[:80] or "item"
    digest = hashlib.sha1(f"{dataset}\0{source_id}".encode()).hexdigest()[:8]
    return f"{slug}_{digest}"
