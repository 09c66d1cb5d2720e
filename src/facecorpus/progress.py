"""Live progress of a run on the local runners, and the channel that carries it from workers to the launcher.

**What is counted.** Stage code already counts through `stage.Counters` (Beam counters); each count is
also added here: items in, out and rejected per stage, rejects by reason, inputs, finished items a
resume skipped. The LLM client adds its request figures through `generation.accounting.Spend` (done,
attempts, retries, cache hits, tokens, cost) and `in_flight()` around each HTTP request. Sources that
know their size before the run (`expect_inputs`) give the rate an end: an ETA.

**The channel.** Beam's metrics cannot be read from FnApiRunner until the run ends, and its workers
may be threads of the launcher or separate processes (`direct_num_workers`, `direct_running_mode`).
Both share the machine, so the channel is a folder: the launcher sets FACECORPUS_PROGRESS_DIR before
the pipeline starts (worker processes inherit it), and a daemon thread in each process that counts
writes its process's running totals there once a second as one small JSON snapshot
(`<pid>-<token>.json`, written beside and renamed over, so a reader never sees half a file).
`ProgressReport`, on the launcher, sums the snapshots and shows them: one live table redrawn in place
on a terminal, one log line every FACECORPUS_PROGRESS_S seconds (default 30; 0: none) otherwise.
Snapshots are cumulative, so a late write only delays a figure; a bundle Beam retries may count twice
here (this is a view of work in progress: stats.json counts from the written files).

Without the variable (Dataflow and other remote runners) nothing is written here and adding is a
dictionary update; there the same figures are Beam counters (README, "Progress").
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

ENV_DIR = "FACECORPUS_PROGRESS_DIR"
ENV_EVERY = "FACECORPUS_PROGRESS_S"
#: the order stages run in; stages not listed follow in the order they first count
STAGE_ORDER = ("source", "download", "image", "dedup", "finish_image", "faces", "render_annotation", "annotate", "render", "generate",
               "render_paraphrase", "paraphrase", "validate")
log = logging.getLogger("facecorpus")

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_expected: list[int] = []  # known input counts of this run's sources (set on the launcher)
_token = uuid.uuid4().hex[:8]
_writer: threading.Thread | None = None
_writer_pid = 0


def add(name: str, n: int = 1) -> None:
    """Add `n` to the figure `name` of this process (thread-safe, cheap)."""
    if not n:
        return
    with _lock:
        _counts[name] += n
    if _writer_pid != os.getpid() and os.environ.get(ENV_DIR):
        _start_writer()


def in_flight(name: str, delta: int) -> None:
    """A gauge: `delta` +1 when a request leaves, -1 when its answer (or failure) is back."""
    add(name, delta)


def expect_inputs(n: int) -> None:
    """A source knows how many inputs it will give (on the launcher, while the graph is built)."""
    _expected.append(n)


def reset() -> None:
    """Forget this process's figures (the launcher calls it when a run starts)."""
    with _lock:
        _counts.clear()
    _expected.clear()


def _start_writer() -> None:
    global _writer, _writer_pid
    with _lock:
        if _writer_pid == os.getpid():
            return
        _writer_pid = os.getpid()
        _writer = threading.Thread(target=_write_forever, name="facecorpus-progress", daemon=True)
        _writer.start()


def write_snapshot(folder: str) -> None:
    """This process's totals into `folder` (atomically)."""
    with _lock:
        data = dict(_counts)
    name = f"{os.getpid()}-{_token}.json"
    tmp = os.path.join(folder, f".{name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, os.path.join(folder, name))
    except OSError:
        pass  # the folder went away with its run, or the disk is full: progress is not worth failing for


def _write_forever() -> None:
    last: dict[str, int] | None = None
    while True:
        time.sleep(1.0)
        folder = os.environ.get(ENV_DIR)
        with _lock:
            now = dict(_counts)
        if folder and os.path.isdir(folder) and now != last:
            write_snapshot(folder)
            last = now


def read_snapshots(folder: str) -> Counter[str]:
    """The sum of every process's latest snapshot in `folder`."""
    total: Counter[str] = Counter()
    for path in Path(folder).glob("*.json"):
        try:
            total.update(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # replaced while read: the next look finds it whole
    return total


# ------------------------------------------------------------------------------------------- the report


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _stages(figures: Counter[str]) -> list[str]:
    seen = [m.group(1) for k in figures for m in [re.match(r"(?:in|out|rejected)\.([^.]+)$", k)] if m]
    known = [s for s in STAGE_ORDER if s in seen]
    return known + sorted(set(seen) - set(known))


class ProgressReport:
    """Shows a running pipeline's figures (summed snapshots) on `stream`: a table redrawn in place
    when `stream` is a terminal, else one log line every `every_s` seconds. Rates are measured over
    the last ~10 s; ETAs run from the sources' known size, scaled by what each stage kept so far."""

    def __init__(self, folder: str, title: str, stream: IO[str] | None = None, every_s: float | None = None) -> None:
        self.folder = folder
        self.title = title
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        env = os.environ.get(ENV_EVERY, "")
        self.every_s = every_s if every_s is not None else (float(env) if env.replace(".", "", 1).isdigit() else 30.0)
        self.expected = sum(_expected) if _expected else None
        self.t0 = time.monotonic()
        self._history: list[tuple[float, Counter[str]]] = []
        self._drawn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- figures

    def figures(self) -> Counter[str]:
        write_snapshot(self.folder)  # the launcher's own threads count too (in-process workers)
        return read_snapshots(self.folder)

    def _rate(self, name: str, now: float, figures: Counter[str]) -> float | None:
        past = [(t, f) for t, f in self._history if now - t >= 3.0]
        if not past:
            return None
        t, f = past[-1]
        return (figures[name] - f[name]) / max(now - t, 1e-9)

    def lines(self, figures: Counter[str]) -> list[str]:
        """The table: a title, one row per stage, the LLM figures."""
        now = time.monotonic()
        header = f"{self.title} · {_duration(now - self.t0)}"
        if figures.get("resume.skipped"):
            header += f" · {figures['resume.skipped']} finished earlier, skipped"
        width = max([9] + [len(stage) for stage in _stages(figures)])
        rows = [header, f"{'stage':<{width}} {'in':>11} {'out':>7} {'rejected':>8} {'rate':>8} {'ETA':>7}  rejects so far"]
        expected = float(self.expected) if self.expected is not None else None
        for stage in _stages(figures):
            n_in, n_out, n_rej = figures[f"in.{stage}"], figures[f"out.{stage}"], figures[f"rejected.{stage}"]
            rate = self._rate(f"in.{stage}", now, figures)
            shown_in = f"{n_in}/{round(expected)}" if expected is not None and stage == "source" else str(n_in)
            eta = "-"
            if expected is not None:
                left = expected - n_in
                if left <= 0.5:
                    eta = "done"
                elif rate:
                    eta = _duration(left / rate)
            reasons = sorted(((k.split(".", 2)[2], v) for k, v in figures.items()
                              if k.startswith(f"reason.{stage}.") and v), key=lambda kv: (-kv[1], kv[0]))
            rate_s = f"{rate:.1f}/s" if rate is not None else "-"
            rows.append(f"{stage:<{width}} {shown_in:>11} {n_out:>7} {n_rej:>8} {rate_s:>8} {eta:>7}  "
                        + (", ".join(f"{k} {v}" for k, v in reasons[:4]) or "-"))
            if expected is not None and n_in:
                expected = expected * (n_out / n_in)  # what reaches the next stage, at this stage's ratio so far
            if expected is not None and stage == "source":
                expected -= figures["resume.skipped"]  # finished earlier: dropped right after the sources
        if any(k.startswith("llm.") for k in figures):
            tokens = f"{figures['llm.prompt_tokens']:,}+{figures['llm.completion_tokens']:,} tokens"
            rows.append(f"LLM: {max(figures['llm.in_flight'], 0)} in flight · {figures['llm.requests']} done · "
                        f"{figures['llm.cache_hits']} cached · {figures['llm.retries']} retried · {tokens} · "
                        f"${figures['llm.cost_microusd'] / 1e6:.4f}")
        return rows

    # -- showing

    def _draw(self, final: bool = False) -> None:
        figures = self.figures()
        now = time.monotonic()
        self._history = [(t, f) for t, f in self._history if now - t <= 12.0] + [(now, figures)]
        rows = self.lines(figures)
        with self._lock:
            if self.tty:
                clear = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
                self.stream.write(clear + "\n".join(rows) + "\n")
                self.stream.flush()
                self._drawn = len(rows)
            elif not final:
                log.info("progress %s", " | ".join(r for i, r in enumerate(rows) if i != 1))

    def write_above(self, text: str) -> None:
        """Print `text` (a log line) above the live table and redraw the table under it."""
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
                self._drawn = 0
            self.stream.write(text)
            self.stream.flush()

    def _loop(self) -> None:
        period = 1.0 if self.tty else self.every_s
        last_line = time.monotonic()
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if self.tty or now - last_line >= period:
                last_line = now
                self._draw()
            elif not self.tty:
                figures = self.figures()  # keep the rate window filled between log lines
                self._history = [(t, f) for t, f in self._history if now - t <= 12.0] + [(now, figures)]

    def start(self) -> ProgressReport:
        if self.tty or self.every_s > 0:
            self._thread = threading.Thread(target=self._loop, name="facecorpus-progress-report", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop; on a terminal the table stays with its final figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self.tty:
                self._draw(final=True)


class AboveTable:
    """A stream for log handlers while a live table is shown: each write goes above the table."""

    def __init__(self, report: ProgressReport, stream: IO[str]) -> None:
        self.report = report
        self.stream = stream

    def write(self, text: str) -> int:
        self.report.write_above(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class LiveProgress:
    """Around a local run: the channel folder (FACECORPUS_PROGRESS_DIR), the report, and log lines
    routed above the live table while it is shown. Use as a context manager."""

    def __init__(self, title: str, stream: IO[str] | None = None) -> None:
        self.title = title
        self.stream = stream or sys.stderr
        self.report: ProgressReport | None = None
        self._folder = ""
        self._previous_env: str | None = None
        self._swapped: list[tuple[logging.StreamHandler, IO[str]]] = []

    def __enter__(self) -> LiveProgress:
        import tempfile

        self._folder = tempfile.mkdtemp(prefix="facecorpus-progress-")
        self._previous_env = os.environ.get(ENV_DIR)
        os.environ[ENV_DIR] = self._folder
        self.report = ProgressReport(self._folder, self.title, self.stream).start()
        if self.report.tty:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                    self._swapped.append((handler, handler.stream))
                    handler.setStream(AboveTable(self.report, self.stream))  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc: object) -> None:
        import shutil

        assert self.report is not None
        self.report.stop()
        for handler, stream in self._swapped:
            handler.setStream(stream)
        if self._previous_env is None:
            os.environ.pop(ENV_DIR, None)
        else:
            os.environ[ENV_DIR] = self._previous_env
        shutil.rmtree(self._folder, ignore_errors=True)
