"""Sample-level resume: what an output already holds, what a run may add to it, and under which fingerprint.

A run records its **fingerprint** (recipe, prompts, versions) in `run.json`. `--resume` on the same
output:

1. refuses a different fingerprint with a message naming what changed, unless `--new-version`
   (which still refuses changed *sources*: a different input set needs a new `--out`);
2. reconciles what a killed run left: partial files in `shards/_tmp/` (staging, half-written shards),
   a shard without its manifest or a manifest without its shard, Beam's `beam-temp-*` folders under
   `rejects/`, and the end-of-run files (`stats.json`, `index.json`, `README.md`), which are rewritten;
3. treats as finished every key in a manifest and every key in a reject line — except retryable
   rejects without a key (the source could not name the input, so it is read again), and with
   `--retry-rejects` every retryable reject: those lines are removed first, then their inputs re-run;
4. writes new shards and reject files under names of its own (`shard-r<N>-…`, `rejects-r<N>-…`), so
   finished shards are never touched.

Finished keys reach the pipeline as a Beam side input read from the files (output/finished.py: looked
up per key, never collected on one machine); reject lines a resumed run emits again for inputs it
re-reads (source and image checks) are dropped against the recorded ones there too.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from .. import __version__
from ..errors import UserError
from ..recipe import Recipe
from ..records import Reject
from ..storage import iter_lines, match_paths, write_atomically
from .fingerprint import fingerprint, fingerprint_changes
from .layout import (
    CARD_FILE,
    HASHES_DIR,
    INDEX_FILE,
    MANIFEST_DIR,
    REJECTS_DIR,
    RUN_FILE,
    SHARDS_DIR,
    STATS_FILE,
    TMP_DIR,
    half_written_files,
    hash_files,
    manifest_files,
    name_of,
    reject_files,
    shard_files,
    tmp_dir,
)
from .run_info import read_run_info, write_run_info

log = logging.getLogger("facecorpus")




def reconcile(out: str) -> list[str]:
    """Remove what an interrupted run left half-done; returns what was removed (paths, for the log)."""
    removed: list[str] = []
    leftovers = match_paths(tmp_dir(out) + "/**")
    if leftovers:
        FileSystems.delete(leftovers)
        removed += leftovers
    tars = {name_of(p)[: -len(".tar")]: p for p in shard_files(out)}
    manifests = {name_of(p)[: -len(".parquet")]: p for p in manifest_files(out)}
    orphans = [p for n, p in tars.items() if n not in manifests] + [p for n, p in manifests.items() if n not in tars]
    if orphans:
        FileSystems.delete(orphans)
        removed += orphans
    # WriteToText's temporary folder: files under beam-temp-*/ (on object stores a prefix, locally a folder)
    beam_temp = match_paths(FileSystems.join(out, REJECTS_DIR, "beam-temp-*", "*"))
    if beam_temp:
        FileSystems.delete(beam_temp)
        removed += beam_temp
    if "://" not in out:
        for folder in Path(out, REJECTS_DIR).glob("beam-temp-*"):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
    half_written = half_written_files(out)
    if half_written:
        FileSystems.delete(half_written)
        removed += half_written
    for name in (STATS_FILE, INDEX_FILE, CARD_FILE):
        path = FileSystems.join(out, name)
        if FileSystems.exists(path):
            FileSystems.delete([path])  # rewritten at the end; a half-finished output must not look finished
    return removed


def _rerun(line: str, retryable_too: bool) -> bool:
    """Whether a reject line's input is re-run by this resume (a malformed line stays for `validate`)."""
    try:
        r = Reject.model_validate_json(line) if line.strip() else None
    except ValueError:
        return False
    return r is not None and r.retryable and (retryable_too or r.key is None)


def drop_reject_lines(out: str, retryable_too: bool) -> int:
    """Remove from rejects/*.jsonl the lines whose inputs a resume re-runs; returns how many were removed.

    Always: retryable rejects without a key. With `retryable_too`: every retryable reject. Each file is
    read twice as a stream (count, then rewrite atomically only when something goes), never held whole.
    """
    removed = 0
    for path in reject_files(out):
        dropped = kept = 0
        for line in iter_lines(path):
            if _rerun(line, retryable_too):
                dropped += 1
            else:
                kept += 1
        if not dropped:
            continue
        removed += dropped
        if kept:
            write_atomically(path, (line.rstrip("\r\n").encode("utf-8") + b"\n" for line in iter_lines(path)
                                    if not _rerun(line, retryable_too)))
        else:
            FileSystems.delete([path])  # nothing left (and S3 takes no empty upload through Beam)
    return removed


@dataclass
class OutputState:
    """What a run may do to its output: which attempt it is and what is already finished there."""

    out: str
    attempt: int
    fingerprint: dict[str, Any]
    manifests: list[str] = field(default_factory=list)  # finished shards' manifests at the start
    reject_files: list[str] = field(default_factory=list)
    hash_files: list[str] = field(default_factory=list)  # dedup_hashes/*.jsonl at the start
    run_info: dict[str, Any] = field(default_factory=dict)
    retry_rejects: bool = False  # this attempt also re-runs the retryable rejects
    existed: bool = True  # `out` was there before this run (abandon_output removes it otherwise)

    @property
    def resuming(self) -> bool:
        """True when the output already holds finished work that this run must not redo."""
        return bool(self.manifests or self.reject_files)

    @property
    def shard_prefix(self) -> str:
        return "shard" if self.attempt == 0 else f"shard-r{self.attempt}"

    @property
    def rejects_prefix(self) -> str:
        return "rejects" if self.attempt == 0 else f"rejects-r{self.attempt}"


def holds_finished_work(out: str) -> bool:
    """True when `out` holds something a run finished: a shard, a manifest or a reject file.

    A run.json alone does not count: it is what a run that failed before writing anything leaves
    (an interrupted pre-flight, a crash, a full disk), and such a folder takes a fresh run as it is.
    """
    return bool(
shard_files(out) or manifest_files(out) or reject_files(out)
    )


def _finished_manifests(out: str) -> list[str]:
    """The manifests that will count once `reconcile` ran: those whose shard exists."""
    tars = {name_of(p)[: -len(".tar")] for p in shard_files(out)}
    return [p for p in manifest_files(out) if name_of(p)[: -len(".parquet")] in tars]


def plan_output(
    recipe: Recipe, out: str, started_at: datetime, resume: bool = False, new_version: bool = False, retry_rejects: bool = False,
    runner: dict[str, Any] | None = None,
) -> OutputState:
    """What a run into `out` will be (fresh or which attempt, what is finished), writing nothing.

    UserError (one line) when it must not run: without `resume`, `out` must not hold finished work;
    with it, see the module docstring. `commit_output` then makes the folder ready and records the
    attempt — after the pre-flight checks, so a run that fails them leaves no trace. `runner`: what
    really runs this attempt (execution.Execution.record()); run.json's `runner` names it.
    """
    where = runner or {"runner": recipe.runner.runner}
    fp = fingerprint(recipe)
    resume = resume or retry_rejects or new_version
    if FileSystems.exists(out) and "://" not in out and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file; give a folder (new or holding a facecorpus run)")
    exists = holds_finished_work(out)  # (an object-store prefix never `exists`: look for the objects a run leaves)
    if exists and not resume:
        raise UserError(f"{out} already holds a run; finish it with --resume, or choose a new --out")
    previous = read_run_info(out) if exists else None
    attempts: list[dict[str, Any]] = []
    mode = "fresh"
    if exists:
        if previous is None or "fingerprint" not in previous:
            raise UserError(f"{out} holds shards or rejects but no run.json fingerprint; it cannot be resumed safely — "
                            f"choose a new --out")
        old = previous["fingerprint"]
        if old.get("sha256") != fp["sha256"]:
            changes = fingerprint_changes(old, fp)
            if not new_version:
                raise UserError(f"{out} was made with different settings ({', '.join(changes)} changed: fingerprint "
                                f"{old.get('sha256', '?')[:12]} → {fp['sha256'][:12]}); resume with the same recipe, "
                                f"or add --new-version to continue under the new one")
            if old.get("sources_sha256") != fp["sources_sha256"]:
                raise UserError(f"{out} was made from different sources; --new-version keeps the inputs and changes "
                                f"the settings only — choose a new --out for new inputs")
            mode = "new_version"
        else:
            mode = "retry_rejects" if retry_rejects else "resume"
        attempts = list(previous.get("attempts", []))
    elif resume and FileSystems.exists(out):
        # killed before it finished anything: a resume of the same recipe keeps the attempts' history
        # (their spend is in the ledger); anything else takes a fresh run, as a plain re-run does
        try:
            earlier = read_run_info(out)
        except UserError:
            earlier = None
        if earlier is not None and (earlier.get("fingerprint") or {}).get("sha256") == fp["sha256"]:
            attempts = list(earlier.get("attempts", []))
            mode = "retry_rejects" if retry_rejects else "resume"
    attempt = len(attempts)
    attempts.append({"attempt": attempt, "mode": mode, "started_at": started_at.isoformat(), "fingerprint": fp["sha256"],
                     "runner": where})
    info = {
        "recipe": recipe.name,
        "recipe_sha256": recipe.sha256(),
        "pipeline_version": __version__,
        "runner": where["runner"],
        "fingerprint": fp,
        "recipe_json": json.loads(recipe.canonical_json()),
        "attempts": attempts,
    }
    return OutputState(
        out=out,
        attempt=attempt,
        fingerprint=fp,
        manifests=_finished_manifests(out) if exists else [],
        reject_files=reject_files(out) if exists else [],
        hash_files=hash_files(out) if exists else [],
        run_info=info,
        retry_rejects=retry_rejects,
        existed=FileSystems.exists(out),
    )


def commit_output(state: OutputState) -> None:
    """Make `state.out` ready for the planned attempt and record it in run.json.

    Resuming: remove what an interrupted run left half-done and the reject lines this attempt re-runs.
    Fresh, into a folder where an earlier run failed before finishing anything (its run.json is
    there): the same clean-up, and its dedup hashes go too, so nothing of it leaks into this run.
    """
    out = state.out
    # a fresh run cleans up only after a facecorpus run (its run.json says so): never a user's own files
    if state.resuming or FileSystems.exists(FileSystems.join(out, RUN_FILE)):
        removed = reconcile(out)
        if not state.resuming:
            stale = hash_files(out)
            if stale:
                FileSystems.delete(stale)
                removed += stale
        if removed:
            log.info("removed %d partial file(s) left by an interrupted run in %s", len(removed), out)
        if state.resuming:
            dropped = drop_reject_lines(out, retryable_too=state.retry_rejects)
            if dropped:
                log.info("resume: %d retryable reject(s) will be re-run", dropped)
    for sub in (SHARDS_DIR, FileSystems.join(SHARDS_DIR, TMP_DIR), MANIFEST_DIR, REJECTS_DIR, HASHES_DIR):
        path = FileSystems.join(out, sub)
        if not FileSystems.exists(path):
            FileSystems.mkdirs(path)
    write_run_info(out, state.run_info)


def abandon_output(state: OutputState) -> bool:
    """After a run failed: remove its partial files (staging, half-written shards: on a full disk they
    are what filled it; `--resume` would remove them anyway). When it finished nothing and `out` held
    nothing before it, remove what `commit_output` made too (run.json, the folders, `out` itself if it
    was new), so a plain re-run works. Returns True then; finished work is never touched."""
    out = state.out
    if "://" in out or not Path(out).is_dir():
        return False
    reconcile(out)  # this attempt's partial files (staging, half-written shards) go in any case
    if state.resuming or holds_finished_work(out):
        return False
    for sub in (FileSystems.join(SHARDS_DIR, TMP_DIR, "staging"), FileSystems.join(SHARDS_DIR, TMP_DIR), SHARDS_DIR,
                MANIFEST_DIR, REJECTS_DIR, HASHES_DIR):
        folder = Path(out, sub)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    Path(out, RUN_FILE).unlink(missing_ok=True)
    for leftover in Path(out).glob(f"{RUN_FILE}.tmp-*"):
        leftover.unlink(missing_ok=True)
    if not state.existed and not any(Path(out).iterdir()):
        Path(out).rmdir()
    return True
