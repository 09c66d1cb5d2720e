"""The reviewers' verdict logs: `DIR/reviews/<reviewer>.jsonl`, append-only, one event per line.

Every action (a verdict, a note, an undo, opening a session) is one JSON line, written and flushed to
disk before the screen changes, so a crash or a closed terminal loses nothing. Nothing is ever
rewritten: an undo is an event that cancels an earlier one, and the current state is a replay of the
log. Verdicts apply to one QA pair (`target = "qa:<index>"`) or to the whole item (`target = "item"`);
a QA pair without its own verdict takes the item's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError

REVIEWS_DIR = "reviews"
REVIEWER_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
ITEM_TARGET = "item"

Verdict = Literal["accept", "reject", "flag"]
VERDICTS: tuple[str, ...] = ("accept", "reject", "flag")


class ReviewEvent(BaseModel):
    """One line of a reviewer's log."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0, description="Position in this reviewer's log; undo events point at one.")
    time: str
    reviewer: str = Field(pattern=REVIEWER_PATTERN)
    action: Literal["open", "judge", "note", "undo"]
    item: str | None = Field(default=None, description="Sample key, or 'reject:<id>' for a reviewed reject.")
    target: str | None = Field(default=None, description="'item' or 'qa:<index>'.")
    category: str | None = Field(default=None, description="QA category of the target, for people reading the log.")
    verdict: Verdict | None = None
    note: str | None = None
    undoes: int | None = None
    args: dict[str, Any] | None = Field(default=None, description="Sampling arguments of an 'open' event.")


def qa_target(index: int) -> str:
    return f"qa:{index}"


def check_reviewer(name: str) -> str:
    """The reviewer name, or a UserError if it cannot be a file name."""
    if not re.match(REVIEWER_PATTERN, name):
        raise UserError(
            f"reviewer name {name!r} is not usable: use 1-64 letters, digits, '_', '-' or '.' (not starting with '.')"
        )
    return name


def log_path(out: str | Path, reviewer: str) -> Path:
    return Path(out) / REVIEWS_DIR / f"{check_reviewer(reviewer)}.jsonl"


@dataclass
class LogRead:
    """Events of one log, plus the lines that could not be read (reported, never silently dropped)."""

    events: list[ReviewEvent] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def read_log(path: Path) -> LogRead:
    """Parse a log; a torn or malformed line is listed in `unreadable` with its line number."""
    res = LogRead()
    if not path.is_file():
        return res
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            res.events.append(ReviewEvent.model_validate_json(line))
        except ValidationError as e:
            res.unreadable.append(f"{path}:{n}: {e.errors()[0]['msg']}")
    return res


@dataclass
class ReviewState:
    """A reviewer's current verdicts and notes: the replay of their log."""

    #: (item, target) → verdict, latest event wins
    verdicts: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: seq numbers of judge/note events still in effect, most recent last (what `undo` cancels)
    active: list[int] = field(default_factory=list)
    last_open_args: dict[str, Any] | None = None

    def item_verdict(self, item: str) -> str | None:
        return self.verdicts.get((item, ITEM_TARGET))

    def qa_verdict(self, item: str, index: int) -> str | None:
        """The verdict of one QA pair: its own, else the item's."""
        return self.verdicts.get((item, qa_target(index))) or self.item_verdict(item)

    def touched(self, item: str) -> bool:
        return any(k[0] == item for k in self.verdicts)


def replay(events: Iterable[ReviewEvent]) -> ReviewState:
    """Current state after applying every event in order (undo cancels the event it names)."""
    events = list(events)
    undone = {e.undoes for e in events if e.action == "undo" and e.undoes is not None}
    state = ReviewState()
    for e in events:
        if e.action == "open":
            state.last_open_args = e.args
        if e.seq in undone or e.item is None:
            continue
        if e.action == "judge" and e.target and e.verdict:
            state.verdicts[(e.item, e.target)] = e.verdict
            state.active.append(e.seq)
        elif e.action == "note" and e.note:
            state.notes.setdefault(e.item, []).append(e.note)
            state.active.append(e.seq)
    return state


class VerdictLog:
    """One reviewer's log file, opened for appending; every `record` is on disk when it returns."""

    def __init__(self, out: str | Path, reviewer: str) -> None:
        self.reviewer = check_reviewer(reviewer)
        self.path = log_path(out, reviewer)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {self.path.parent}: {e.strerror}") from e
        read = read_log(self.path)
        self.unreadable = read.unreadable
        self.events = read.events
        self.state = replay(self.events)
        self._seq = max((e.seq for e in self.events), default=-1) + 1
        # a torn last line (the process died mid-write) must not glue onto the next event
        if self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            with self.path.open("a", encoding="utf-8") as f:
                f.write("\n")
        self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def record(self, action: str, **fields: Any) -> ReviewEvent:
        """Append one event, flush and fsync it, and apply it to `state`."""
        event = ReviewEvent(
            seq=self._seq,
            time=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            reviewer=self.reviewer,
            action=action,  # type: ignore[arg-type]
            **fields,
        )
        self._file.write(event.model_dump_json(exclude_none=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._seq += 1
        self.events.append(event)
        self.state = replay(self.events)
        return event

    def judge(self, item: str, target: str, verdict: str, category: str | None = None) -> ReviewEvent:
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        return self.record("judge", item=item, target=target, verdict=verdict, category=category)

    def note(self, item: str, text: str) -> ReviewEvent:
        return self.record("note", item=item, note=text)

    def undo(self) -> ReviewEvent | None:
        """Cancel the most recent verdict or note still in effect; None when there is nothing to undo."""
        if not self.state.active:
            return None
        target_seq = self.state.active[-1]
        undone = next(e for e in self.events if e.seq == target_seq)
        self.record("undo", undoes=target_seq, item=undone.item, target=undone.target)
        return undone


def reviewer_logs(out: str | Path) -> dict[str, LogRead]:
    """Every reviewer's log in DIR/reviews, by reviewer name (the file stem)."""
    folder = Path(out) / REVIEWS_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: read_log(p) for p in sorted(folder.glob("*.jsonl"))}


def reviewer_states(out: str | Path) -> tuple[dict[str, ReviewState], list[str]]:
    """(reviewer → state, unreadable line descriptions) for every log in DIR/reviews."""
    logs = reviewer_logs(out)
    unreadable = [u for r in logs.values() for u in r.unreadable]
    return {name: replay(r.events) for name, r in logs.items()}, unreadable
