"""`facecorpus validate`'s check of rejects/*.jsonl, streamed in constant memory per line: every line a
valid reject, no keyed input rejected twice nor both rejected and written, no keyless reject repeated.

What it keeps per reject line is 16 bytes: an 8-byte hash of its key (or of a keyless reject's
identity) and where the line is. Repeats are found by sorting those hashes at the end; a hash that
repeats is confirmed by reading the lines it points at again (so a hash collision reports nothing),
and only then reported, naming both places.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from ..records import Reject
from ..storage import iter_lines
from .finished import reject_identity
from .layout import name_of, reject_files
from .summaries import RejectSummary

if TYPE_CHECKING:
    from .check import Report
    from .check_rules import SeenSample

_LINE_BITS = 40  # a position is (file index << 40) | line number


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _repeats(hashes: array, positions: array) -> Iterator[list[int]]:
    """Positions of the lines sharing a hash, each group in file order (only groups of two or more)."""
    if not hashes:
        return
    h = np.frombuffer(hashes, dtype=np.uint64)
    pos = np.frombuffer(positions, dtype=np.uint64)
    order = np.lexsort((pos, h))
    h, pos = h[order], pos[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    ends = np.r_[starts[1:], len(h)]
    for a, b in zip(starts, ends, strict=True):
        if b - a > 1:
            yield [int(p) for p in pos[a:b]]


def _lines_at(files: list[str], wanted: set[int]) -> dict[int, Reject]:
    """The rejects at the positions `wanted`, read again (only those files, streamed)."""
    found: dict[int, Reject] = {}
    by_file: dict[int, set[int]] = {}
    for p in wanted:
        by_file.setdefault(p >> _LINE_BITS, set()).add(p & ((1 << _LINE_BITS) - 1))
    for f, lines in sorted(by_file.items()):
        for lineno, line in enumerate(iter_lines(files[f]), start=1):
            if lineno in lines:
                found[(f << _LINE_BITS) | lineno] = Reject.model_validate_json(line)
    return found


def check_rejects(out: str, rep: Report, seen: dict[str, SeenSample]) -> RejectSummary | None:
    """Every reject line, streamed; returns the counts of the valid ones (None when some line is invalid:
    stats are then not compared per reason)."""
    summary = RejectSummary()
    valid = 0
    files = reject_files(out)
    keyed, keyed_at = array("Q"), array("Q")
    keyless, keyless_at = array("Q"), array("Q")
    for f, path in enumerate(files):
        name = name_of(path)
        for lineno, raw in enumerate(iter_lines(path), start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            rep.rejects += 1
            try:
                r = Reject.model_validate_json(line)
            except ValidationError as e:
                rep.add("rejects", f"{name} line {lineno}: not a valid reject ({e.errors()[0]['msg']})")
                continue
            valid += 1
            summary.add_line(line)
            at = (f << _LINE_BITS) | lineno
            if r.key is not None:
                if r.key in seen:
                    rep.add("rejects", f"{name} line {lineno}: {r.key} is rejected ({r.reason}) and also written in "
                                       f"{seen[r.key].shard}")
                keyed.append(_hash(r.key))
                keyed_at.append(at)
            else:
                keyless.append(_hash(reject_identity(r)))
                keyless_at.append(at)
    def where(p: int) -> str:
        return f"{name_of(files[p >> _LINE_BITS])} line {p & ((1 << _LINE_BITS) - 1)}"

    groups = [("keyed", g) for g in _repeats(keyed, keyed_at)] + [("keyless", g) for g in _repeats(keyless, keyless_at)]
    lines = _lines_at(files, {p for _, g in groups for p in g}) if groups else {}
    found: list[tuple[int, str]] = []
    for kind, group in groups:
        by_value: dict[str, list[int]] = {}
        for p in group:  # a hash shared by different keys (a collision) is no repeat
            r = lines[p]
            by_value.setdefault(r.key if kind == "keyed" else reject_identity(r), []).append(p)
        for ps in by_value.values():
            first = lines[ps[0]]
            if kind == "keyed":
                found += [(p, f"{where(p)}: {first.key} is rejected twice (also at {where(ps[0])})") for p in ps[1:]]
            elif len(ps) > 1:
                found.append((ps[1], f"{where(ps[1])}: the same reject of {first.source_id} ({first.reason}) appears twice"))
    for _, message in sorted(found):
        rep.add("rejects", message)
    return summary if valid == rep.rejects else None
