"""The spend ledger: every request sent to a paid endpoint, and its answer, on disk as it happens.

Beam counters only reach stats.json when an attempt finishes; a run killed with SIGKILL loses them,
although the endpoint received (and billed) every request it sent. The ledger closes that gap: each
worker process appends to its own file `<out>/llm_ledger/<host>-<pid>-<random>.jsonl`

    {"e": "sent", "id": "<file>:<seq>", "t": 1733100000.123[, "s": "judge"]}
    {"e": "answered", "id": ..., "prompt_tokens": .., "completion_tokens": .., "cached_tokens": .., "cost_usd": ..[, "s": ..]}
    {"e": "failed", "id": ..., "status": 429}          (an HTTP error, a timeout, a dropped connection)
    {"e": "batch", "key": <cache key>, "prompt_tokens": .., ...}   (a Batch API result stored in the cache)

(`s` tags the lines of a stage other than generation, e.g. the LLM judge's), one line per event, written with a single `write` to a file opened `O_APPEND` — the kernel has it
the moment the call returns, so a kill of the process loses nothing written; a line is never
interleaved with another. Lines hold counts only: no request text, no answer, no API key, no URL
(a batch line names its response-cache key, a hash, so a result collected twice counts once).

`ledger_totals(out)` reads every file back: `attempts` = requests sent, `requests` = answers
received, their tokens and cost, and `unanswered` = requests sent whose answer never arrived (in
flight when the process died). The endpoint received those too, and may bill them: they count in
`attempts` (so `attempts` equals what the endpoint saw), their tokens and cost are unknown and not in
the sums. "sent" is written when the request's body has been written to the socket (a trace hook of
the HTTP transport), so an attempt that never reached the endpoint (connection refused) is not
counted; a kill in the microseconds between the last byte leaving and that line being written would
miss one request (none were missed in the kill tests).

Needs a local output folder (appending is a local-filesystem operation); with a gs:// or s3:// output
there is no ledger, and stats.json's `llm` comes from the Beam counters of the attempts that finished.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from .accounting import TokenUsage

LEDGER_DIR = "llm_ledger"


def ledger_dir(out: str) -> str | None:
    """The ledger folder of an output, or None where appending is not possible (object stores)."""
    if "://" in out:
        return None
    return os.path.join(os.path.expanduser(out), LEDGER_DIR)


class SpendLedger:
    """This process's ledger file; thread-safe (each event is one `os.write` of one line)."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = os.path.join(folder, f"{name}.jsonl")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._name = name
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def _write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        os.write(self._fd, line)  # one write, O_APPEND: whole lines, in the kernel once this returns

    def new_id(self) -> str:
        """An id for one attempt (its `sent`, then `answered` or `failed` lines)."""
        with self._lock:
            return f"{self._name}:{next(self._seq)}"

    def sent(self, rid: str, stage: str | None = None) -> None:
        """Record that the attempt's request has been handed to the endpoint (its body is on the wire)."""
        event: dict[str, Any] = {"e": "sent", "id": rid, "t": round(time.time(), 3)}
        if stage:
            event["s"] = stage
        self._write(event)

    def answered(self, rid: str, usage: TokenUsage, cost_usd: float, stage: str | None = None) -> None:
        event: dict[str, Any] = {"e": "answered", "id": rid, "prompt_tokens": usage.prompt,
                                 "completion_tokens": usage.completion, "cached_tokens": usage.cached, "cost_usd": cost_usd}
        if stage:
            event["s"] = stage
        self._write(event)

    def failed(self, rid: str, status: int | str) -> None:
        self._write({"e": "failed", "id": rid, "status": status})

    def batch_result(self, key: str, usage: TokenUsage, cost_usd: float) -> None:
        """A Batch API response (paid once, at the batch's price) as this run stored it."""
        self._write({"e": "batch", "key": key, "prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
                     "cached_tokens": usage.cached, "cost_usd": cost_usd})

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_SUMMED = ("prompt_tokens", "completion_tokens", "cached_tokens")


def ledger_totals(out: str) -> dict[str, Any] | None:
    """What every attempt of an output sent and received, from its ledger; None when it has none.

    Keys: attempts, requests, unanswered, failed_attempts, batch_requests, prompt_tokens,
    completion_tokens, cached_tokens, cost_usd (all stages together), and `by_stage`: the same
    attempts, requests, tokens and cost for each tagged stage (e.g. `judge`). A torn last line (a kill in the middle of a write
    cannot happen with one write of one line, but a full disk can) is skipped.
    """
    folder = ledger_dir(out)
    if folder is None or not os.path.isdir(folder):
        return None
    sent: set[str] = set()
    closed: set[str] = set()
    batch_keys: set[str] = set()
    totals: dict[str, Any] = {"attempts": 0, "requests": 0, "unanswered": 0, "failed_attempts": 0,
                              "batch_requests": 0, **{k: 0 for k in _SUMMED}, "cost_usd": 0.0}
    stages: dict[str, dict[str, Any]] = {}
    stage_sent: dict[str, set[str]] = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            for raw in f:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                kind = event.get("e")
                tag = event.get("s")
                if kind == "sent":
                    sent.add(event["id"])
                    if tag:
                        stage_sent.setdefault(tag, set()).add(event["id"])
                elif kind in ("answered", "failed"):
                    closed.add(event["id"])
                    if kind == "failed":
                        totals["failed_attempts"] += 1
                        continue
                    totals["requests"] += 1
                    if tag:
                        part = stages.setdefault(tag, {"requests": 0, **{k: 0 for k in _SUMMED}, "cost_usd": 0.0})
                        part["requests"] += 1
                        for k in _SUMMED:
                            part[k] += int(event.get(k, 0))
                        part["cost_usd"] += float(event.get("cost_usd", 0.0))
                if kind in ("answered", "batch"):
                    if kind == "batch":
                        if event.get("key") in batch_keys:
                            continue
                        batch_keys.add(event.get("key"))
                        totals["batch_requests"] += 1
                        totals["requests"] += 1
                    for k in _SUMMED:
                        totals[k] += int(event.get(k, 0))
                    totals["cost_usd"] += float(event.get("cost_usd", 0.0))
    totals["attempts"] = len(sent)
    totals["unanswered"] = len(sent - closed)
    totals["cost_usd"] = round(totals["cost_usd"], 6)
    totals["by_stage"] = {}
    for tag in sorted(set(stages) | set(stage_sent)):
        part = stages.get(tag, {"requests": 0, **{k: 0 for k in _SUMMED}, "cost_usd": 0.0})
        part["cost_usd"] = round(part["cost_usd"], 6)
        totals["by_stage"][tag] = {"attempts": len(stage_sent.get(tag, ())), **part}
    return totals


_open: dict[str, SpendLedger] = {}
_open_lock = threading.Lock()


def process_ledger(out: str | None) -> SpendLedger | None:
    """This process's ledger for output `out` (one file per process and output, opened on first
    use, closed at exit); None without an output or where it cannot append."""
    folder = ledger_dir(out) if out else None
    if folder is None:
        return None
    with _open_lock:
        ledger = _open.get(folder)
        if ledger is None:
            ledger = _open[folder] = SpendLedger(folder)
            atexit.register(ledger.close)
        return ledger
