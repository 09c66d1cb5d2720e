"""Duplicate and held-out images, found at scale without collecting everything on one machine.

Every transform here works on light records `(key, sha256, phash)` only; images stay where they are
(see `dedup_stage.py`). The rule, deterministic whatever the order or the runner:

- exact: images with the same sha256 of their input bytes form a group; all but the smallest key are
  rejected `duplicate` (grouped by sha256, so each group is one reducer's work);
- near: an image is rejected `duplicate` when an image with a smaller key has a perceptual hash within
  `max_distance` bits. Candidate pairs come from LSH banding: the 64 bits are cut into
  `max_distance + 1` bands, and two hashes within that distance agree on at least one whole band
  (pigeonhole), so comparing only within (band, value) buckets misses no pair. Identical hashes are
  collapsed first (a group of 10,000 blank images is one bucket entry, not 10^8 pairs). In a chain
  A~B~C with A and C far apart, both B and C are rejected (each has a smaller near neighbour): the rule
  is conservative, never keeps two near-identical images;
- hold-out: an image whose sha256 is on a hold-out list, or (when `max_distance` is set) whose pHash
  is within that distance of a listed pHash, is rejected `holdout`.

Work per bucket is quadratic in its size; with uniform hashes a bucket holds about N / 2^(64/(d+1))
distinct hashes, so keep `max_distance` small (≤ 4) for corpora of hundreds of millions of images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

#: decision priority: a held-out image is reported as such even when it is also a duplicate
PRIORITY = {"holdout": 0, "duplicate": 1}


@dataclass(frozen=True, order=True)
class Verdict:
    """Why an image must not be written. Ordered by priority, then by the rest, so min() is deterministic."""

    priority: int
    reason: str
    detail: str


def band_spans(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of the max_distance + 1 contiguous bands the 64 pHash bits are cut into."""
    n = max_distance + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    spans, shift = [], 64
    for w in widths:
        shift -= w
        spans.append((shift, w))
    return spans


def band_keys(phash: str, max_distance: int) -> list[str]:
    """The bucket names a pHash falls into: 'band:value' for each band."""
    value = int(phash, 16)
    return [f"{i}:{(value >> shift) & ((1 << width) - 1):x}" for i, (shift, width) in enumerate(band_spans(max_distance))]


def close_pairs(hashes: list[int], max_distance: int) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) for i < j with Hamming(hashes[i], hashes[j]) ≤ max_distance, vectorised per row."""
    if len(hashes) < 2:
        return
    arr = np.array(hashes, dtype=np.uint64)
    for i in range(len(arr) - 1):
        dist = np.bitwise_count(arr[i + 1 :] ^ arr[i])
        for j in np.nonzero(dist <= max_distance)[0]:
            yield i, i + 1 + int(j), int(dist[j])


# --------------------------------------------------------------------------------------------- exact


def _exact_losers(group: tuple[str, Iterable[str]]) -> Iterator[tuple[str, Verdict]]:
    sha, keys = group
    winner = min(keys)  # iterables from a GroupByKey may be iterated twice (reiterable)
    for k in keys:
        if k != winner:
            yield k, Verdict(PRIORITY["duplicate"], "duplicate",
                             f"exact duplicate of {winner} (same sha256 {sha[:12]}…); the smallest key is kept")


class ExactDuplicates(beam.PTransform):
    """PCollection[(key, sha256, phash)] → PCollection[(key, Verdict)] for every exact duplicate but one."""

    def expand(self, light: beam.PCollection) -> beam.PCollection:
        return (
            light
            | "BySha" >> beam.Map(lambda r: (r[1], r[0]))
            | "GroupSha" >> beam.GroupByKey()
            | "ExactLosers" >> beam.FlatMap(_exact_losers)
        )


# ---------------------------------------------------------------------------------------------- near


def _bucket_entries(rep: tuple[str, str], max_distance: int) -> Iterator[tuple[str, tuple[str, str]]]:
    phash, min_key = rep
    for b in band_keys(phash, max_distance):
        yield b, (phash, min_key)


def _neighbours_in_bucket(bucket: tuple[str, Iterable[tuple[str, str]]], max_distance: int) -> Iterator[tuple[str, tuple[str, int]]]:
    """For each pair of distinct hashes close enough: each side learns the other's smallest key."""
    _, entries = bucket
    reps = sorted(set(entries))
    for i, j, dist in close_pairs([int(p, 16) for p, _ in reps], max_distance):
        (pa, ka), (pb, kb) = reps[i], reps[j]
        yield pa, (kb, dist)
        yield pb, (ka, dist)


def _near_losers(group: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Verdict]]:
    _, parts = group
    members = parts["members"]
    if not members:
        return
    smallest = min(members)
    neighbour = min(parts["neighbours"]) if parts["neighbours"] else None
    for k in members:
        candidates = []
        if smallest < k:
            candidates.append((smallest, 0))
        if neighbour is not None and neighbour[0] < k:
            candidates.append(neighbour)
        if candidates:
            winner, dist = min(candidates)
            how = "the same perceptual hash" if dist == 0 else f"pHash distance {dist}"
            yield k, Verdict(PRIORITY["duplicate"], "duplicate",
                             f"near duplicate of {winner} ({how}); the smallest key is kept")


class NearDuplicates(beam.PTransform):
    """PCollection[(key, sha256, phash)] → PCollection[(key, Verdict)] for images with a smaller near neighbour."""

    def __init__(self, max_distance: int) -> None:
        super().__init__()
        self.max_distance = max_distance

    def expand(self, light: beam.PCollection) -> beam.PCollection:
        d = self.max_distance
        members = light | "ByPhash" >> beam.Map(lambda r: (r[2], r[0]))
        reps = members | "SmallestPerPhash" >> beam.CombinePerKey(min)
        neighbours = (
            reps
            | "Bands" >> beam.FlatMap(_bucket_entries, d)
            | "GroupBands" >> beam.GroupByKey()
            | "ComparePairs" >> beam.FlatMap(_neighbours_in_bucket, d)
            | "SmallestNeighbour" >> beam.CombinePerKey(min)
        )
        return (
            {"members": members, "neighbours": neighbours}
            | "JoinPhash" >> beam.CoGroupByKey()
            | "NearLosers" >> beam.FlatMap(_near_losers)
        )


# ------------------------------------------------------------------------------------------- hold-out


def _holdout_bucket_entries(entry: tuple[str, str, str], max_distance: int) -> Iterator[tuple[str, tuple[str, str, str]]]:
    side, phash, ident = entry  # side: 'item' (ident = phash itself) or 'holdout' (ident = list id)
    for b in band_keys(phash, max_distance):
        yield b, (side, phash, ident)


def _holdout_matches(bucket: tuple[str, Iterable[tuple[str, str, str]]], max_distance: int) -> Iterator[tuple[str, tuple[int, str]]]:
    _, entries = bucket
    items = sorted({p for side, p, _ in entries if side == "item"})
    listed = sorted({(p, i) for side, p, i in entries if side == "holdout"})
    if not items or not listed:
        return
    held = np.array([int(p, 16) for p, _ in listed], dtype=np.uint64)
    for p in items:
        dist = np.bitwise_count(held ^ np.uint64(int(p, 16)))
        for j in np.nonzero(dist <= max_distance)[0]:
            yield p, (int(dist[j]), listed[j][1])


def _holdout_by_phash(group: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Verdict]]:
    _, parts = group
    if not parts["match"]:
        return
    dist, ident = min(parts["match"])
    for k in parts["members"]:
        yield k, Verdict(PRIORITY["holdout"], "holdout",
                         f"the image is within pHash distance {dist} of held-out image {ident}")


def _holdout_by_sha(group: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Verdict]]:
    sha, parts = group
    if not parts["holdout"]:
        return
    ident = min(parts["holdout"])
    for k in parts["members"]:
        yield k, Verdict(PRIORITY["holdout"], "holdout", f"the image bytes are held-out image {ident} (same sha256 {sha[:12]}…)")


class HoldoutMatches(beam.PTransform):
    """(light records, hold-out entries (sha256, phash | None, id)) → PCollection[(key, Verdict)]."""

    def __init__(self, holdout: beam.PCollection, max_distance: int | None) -> None:
        super().__init__()
        self.holdout = holdout
        self.max_distance = max_distance

    def expand(self, light: beam.PCollection) -> beam.PCollection:
        listed = self.holdout
        by_sha = (
            {
                "members": light | "ItemSha" >> beam.Map(lambda r: (r[1], r[0])),
                "holdout": listed | "ListedSha" >> beam.Map(lambda h: (h[0], h[2])),
            }
            | "JoinSha" >> beam.CoGroupByKey()
            | "ShaMatches" >> beam.FlatMap(_holdout_by_sha)
        )
        if self.max_distance is None:
            return by_sha
        d = self.max_distance
        members = light | "ItemPhash" >> beam.Map(lambda r: (r[2], r[0]))
        entries = (
            members | "ItemEntries" >> beam.Map(lambda m: ("item", m[0], m[0])),
            listed | "ListedPhash" >> beam.Filter(lambda h: h[1] is not None) | "ListedEntries" >> beam.Map(lambda h: ("holdout", h[1], h[2])),
        ) | "AllEntries" >> beam.Flatten()
        matches = (
            entries
            | "HoldoutBands" >> beam.FlatMap(_holdout_bucket_entries, d)
            | "GroupHoldoutBands" >> beam.GroupByKey()
            | "CompareHoldout" >> beam.FlatMap(_holdout_matches, d)
        )
        by_phash = (
            {"members": members, "match": matches}
            | "JoinHoldoutPhash" >> beam.CoGroupByKey()
            | "PhashMatches" >> beam.FlatMap(_holdout_by_phash)
        )
        return (by_sha, by_phash) | "HoldoutVerdicts" >> beam.Flatten()
