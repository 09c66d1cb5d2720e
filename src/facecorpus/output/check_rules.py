"""`facecorpus validate`'s re-check of the recipe's output-wide rules on what was written: no two
written images are (near-)duplicates the recipe's dedup would have rejected, and none is on one of its
hold-out lists. (The per-record rules run per sample in output/check.py.) They work on the few fields
output/check.py keeps of each sample (`SeenSample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..image_check import hamming
from ..recipe import Recipe
from ..validation.dedup import band_keys
from ..validation.holdout import read_holdout_list

if TYPE_CHECKING:
    from .check import Report


@dataclass(slots=True)
class SeenSample:
    """What the whole-output checks keep of one sample: its shard and image hashes (the record, image
    and manifest row are checked while its shard is read, then dropped)."""

    shard: str
    sha256: str | None = None
    phash: str | None = None
    face_index: int | None = None  # crop.face_index: one photo yields one sample per face with `faces.unit: face`
    has_row: bool = False  # its manifest row was found


def check_duplicates(recipe: Recipe, rep: Report, seen: dict[str, SeenSample]) -> None:
    """The written images hold no pair the recipe's dedup would have rejected (banded like the pipeline).

    Dedup works on input images, before faces are found: the samples of different faces of one photo
    (same sha256, different `crop.face_index`) are not duplicates of each other; two samples of the same
    face of the same photo are.
    """
    d = recipe.validation.dedup
    if d.exact:
        by_sha: dict[tuple[str, int | None], str] = {}
        for k in sorted(seen):
            s = seen[k].sha256
            ident = (s, seen[k].face_index)
            if s is not None and ident in by_sha:
                rep.add("dedup", f"{k} and {by_sha[ident]} are the same image (sha256 {s[:12]}…)")  # type: ignore[index]
            elif s is not None:
                by_sha[ident] = k  # type: ignore[index]
    if d.near:
        buckets: dict[str, list[str]] = {}
        for k in sorted(seen):
            if seen[k].phash is not None:
                for b in band_keys(seen[k].phash, d.max_distance):  # type: ignore[arg-type]
                    buckets.setdefault(b, []).append(k)
        reported: set[tuple[str, str]] = set()
        for keys in buckets.values():
            for i, a in enumerate(keys):
                for b in keys[i + 1 :]:
                    if seen[a].sha256 is not None and seen[a].sha256 == seen[b].sha256:
                        continue  # one photo: its faces (or an exact duplicate, reported above)
                    dist = hamming(seen[a].phash, seen[b].phash)  # type: ignore[arg-type]
                    if dist <= d.max_distance and (a, b) not in reported:
                        reported.add((a, b))
                        rep.add("dedup", f"{a} and {b} are near duplicates (pHash distance {dist} ≤ {d.max_distance})")


def check_holdout(recipe: Recipe, rep: Report, seen: dict[str, SeenSample]) -> None:
    h = recipe.validation.holdout
    for path in h.lists:
        try:
            listed = read_holdout_list(path)
        except Exception as e:  # noqa: BLE001 - a list moved away cannot be checked; say so
            rep.notes.append(f"hold-out list not re-checked: {e}")
            continue
        shas = {sha: ident for sha, _, ident in listed if sha}
        ids = [ident for _, p, ident in listed if p]
        held = np.array([int(p, 16) for _, p, _ in listed if p], dtype=np.uint64)
        for k, s in sorted(seen.items()):
            if s.sha256 in shas:
                rep.add("holdout", f"{k} is held-out image {shas[s.sha256]} (same sha256)")
            elif h.max_distance is not None and s.phash is not None and len(held):
                dist = np.bitwise_count(held ^ np.uint64(int(s.phash, 16)))
                j = int(dist.argmin())
                if dist[j] <= h.max_distance:
                    rep.add("holdout", f"{k} is within pHash distance {int(dist[j])} of held-out image {ids[j]}")
