"""Sample-level resume: what an output already holds, what a run may add to it, and under which fingerprint.
(Over 400 lines until the output package of issue 14 takes the output folder's state out of validation/.)

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

Finished keys reach the pipeline as a Beam side input read from the files (looked up per key, never
collected on one machine); reject lines a resumed run emits again for inputs it re-reads (source and
image checks) are dropped against the recorded ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from .. import __version__
from ..errors import UserError
from ..recipe import Recipe, source_identity
from ..records import PHASH_VERSION, SCHEMA_VERSION, Reject
from ..sinks.run_files import CARD_FILE, INDEX_FILE, REJECTS_DIR, RUN_FILE, STATS_FILE, match_paths, read_text
from ..sinks.shards import MANIFEST_DIR, SHARDS_DIR, TMP_DIR

log = logging.getLogger("facecorpus")
#: (key, sha256, pHash) of every image dedup saw, one file per bundle (see screen.Park)
HASHES_DIR = "dedup_hashes"


# -------------------------------------------------------------------------------------------- fingerprint


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def prompts_sha256(recipe: Recipe) -> str:
    """Hash of what shapes the generated text for this recipe: the templates generator's phrasing, or
    the one prompt set the LLM generator uses (its verified hash: templates, topics, bounds, version),
    and the annotation's, the paraphrase's and the judge's prompt sets when those stages run. Other
    prompt sets in the folder do not count, so editing one never blocks a resume of another."""
    g = recipe.generation
    text = _generation_sha256(recipe)
    if not g.annotation.enabled and not g.paraphrase.enabled and not g.judge.enabled:
        return text
    from ..prompting.promptset import load_prompt_set

    parts = {"text": text}
    if g.annotation.enabled:
        parts["annotation"] = load_prompt_set(g.annotation.prompt_set, g.prompts_dir).sha256
    if g.paraphrase.enabled:
        parts["paraphrase"] = load_prompt_set(g.paraphrase.prompt_set, g.prompts_dir).sha256
    if g.judge.enabled:
        parts["judge"] = load_prompt_set(g.judge.prompt_set, g.prompts_dir).sha256
    return _sha(parts)


def _generation_sha256(recipe: Recipe) -> str:
    g = recipe.generation
    if g.generator == "templates":
        from ..generation.templates import templates_sha256

        return _sha({"templates_generator": templates_sha256()})
    if g.generator == "labels":
        from ..generation.label_qa import label_qa_sha256

        return _sha({"labels_generator": label_qa_sha256()})
    from ..generation.preflight import load_checked_prompt_set

    prompt_set = load_checked_prompt_set(g)
    if prompt_set.mode == "rewrite":  # the LLM rephrases the templates' texts: both shape them
        from ..generation.templates import templates_sha256

        return _sha({"prompt_set": prompt_set.sha256, "templates_generator": templates_sha256()})
    return _sha({"prompt_set": prompt_set.sha256})


def fingerprint(recipe: Recipe) -> dict[str, Any]:
    """{'sha256', 'recipe_sha256', 'sources_sha256', 'prompts_sha256', 'versions'} of a run's settings.

    The recipe hash leaves out the fields marked execution-only (config.EXECUTION_ONLY); versions are facecorpus's and
    the record schema's — what changes the records written.
    """
    parts = {
        "recipe_sha256": recipe.sha256(),
        "sources_sha256": _sha([source_identity(s) for s in recipe.sources]),
        "prompts_sha256": prompts_sha256(recipe),
        "versions": {"facecorpus": __version__, "schema": SCHEMA_VERSION, "phash": PHASH_VERSION},
    }
    return {"sha256": _sha(parts), **parts}


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human names of the parts that differ between two fingerprints."""
    names = {"recipe_sha256": "recipe", "prompts_sha256": "prompts", "versions": "versions"}
    changed = [label for k, label in names.items() if old.get(k) != new.get(k)]
    if old.get("versions") != new.get("versions"):
        changed[-1] = f"versions ({old.get('versions')} → {new.get('versions')})"
    return changed or (["fingerprint"] if old.get("sha256") != new.get("sha256") else [])


# ------------------------------------------------------------------------------------------------ files


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def write_atomically(path: str, data: bytes) -> None:
    """Write beside the target, then rename over it: readers see the old file or the new one, never half."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def read_run_info(out: str) -> dict[str, Any] | None:
    path = FileSystems.join(out, RUN_FILE)
    if not FileSystems.exists(path):
        return None
    try:
        info = json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path} is not valid JSON; it records what made this output and cannot be guessed") from None
    return info if isinstance(info, dict) else None


def write_run_info(out: str, info: dict[str, Any]) -> None:
    write_atomically(FileSystems.join(out, RUN_FILE), (json.dumps(info, indent=2, sort_keys=False) + "\n").encode())


def half_written_files(out: str) -> list[str]:
    """Files `write_atomically` left beside their target when killed (stats.json.tmp-…, rejects, hashes)."""
    found = []
    for folder in ("", REJECTS_DIR, HASHES_DIR):
        pattern = FileSystems.join(out, folder, "*.tmp-*") if folder else FileSystems.join(out, "*.tmp-*")
        found += match_paths(pattern)
    return found


def reconcile(out: str) -> list[str]:
    """Remove what an interrupted run left half-done; returns what was removed (paths, for the log)."""
    removed: list[str] = []
    tmp = FileSystems.join(out, SHARDS_DIR, TMP_DIR)
    leftovers = match_paths(tmp + "/**")
    if leftovers:
        FileSystems.delete(leftovers)
        removed += leftovers
    tars = {_name(p)[: -len(".tar")]: p for p in match_paths(FileSystems.join(out, SHARDS_DIR, "*.tar"))}
    manifests = {_name(p)[: -len(".parquet")]: p for p in match_paths(FileSystems.join(out, MANIFEST_DIR, "*.parquet"))}
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


def drop_reject_lines(out: str, retryable_too: bool) -> int:
    """Remove from rejects/*.jsonl the lines whose inputs a resume re-runs; returns how many were removed.

    Always: retryable rejects without a key. With `retryable_too`: every retryable reject.
    """
    removed = 0
    for path in match_paths(FileSystems.join(out, REJECTS_DIR, "*.jsonl")):
        lines = read_text(path).splitlines()
        keep = []
        for line in lines:
            try:
                r = Reject.model_validate_json(line) if line.strip() else None
            except ValueError:
                r = None  # a malformed line stays for `facecorpus validate` to report
            if r is not None and r.retryable and (retryable_too or r.key is None):
                removed += 1
                continue
            keep.append(line)
        if len(keep) != len(lines) and keep:
            write_atomically(path, ("\n".join(keep) + "\n").encode())
        elif len(keep) != len(lines):
            FileSystems.delete([path])  # nothing left (and S3 takes no empty upload through Beam)
    return removed


# ------------------------------------------------------------------------------------------------ state


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
        match_paths(FileSystems.join(out, SHARDS_DIR, "*.tar"))
        or match_paths(FileSystems.join(out, MANIFEST_DIR, "*.parquet"))
        or match_paths(FileSystems.join(out, REJECTS_DIR, "*.jsonl"))
    )


def _finished_manifests(out: str) -> list[str]:
    """The manifests that will count once `reconcile` ran: those whose shard exists."""
    tars = {_name(p)[: -len(".tar")] for p in match_paths(FileSystems.join(out, SHARDS_DIR, "*.tar"))}
    return [p for p in match_paths(FileSystems.join(out, MANIFEST_DIR, "*.parquet")) if _name(p)[: -len(".parquet")] in tars]


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
        reject_files=match_paths(FileSystems.join(out, REJECTS_DIR, "*.jsonl")) if exists else [],
        hash_files=match_paths(FileSystems.join(out, HASHES_DIR, "*.jsonl")) if exists else [],
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
            stale = match_paths(FileSystems.join(out, HASHES_DIR, "*.jsonl"))
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


def open_output(
    recipe: Recipe, out: str, started_at: datetime, resume: bool = False, new_version: bool = False, retry_rejects: bool = False,
    runner: dict[str, Any] | None = None,
) -> OutputState:
    """`plan_output` then `commit_output`: `out` ready for a run, the attempt recorded in run.json."""
    state = plan_output(recipe, out, started_at, resume=resume, new_version=new_version, retry_rejects=retry_rejects,
                        runner=runner)
    commit_output(state)
    return state


# ------------------------------------------------------------------------------------------------ Beam


def _manifest_keys(path: str) -> Iterator[tuple[str, str]]:
    with FileSystems.open(path) as f:
        table = pq.read_table(pa.BufferReader(f.read()), columns=["key"])
    for key in table.column("key").to_pylist():
        yield key, "written"


def _rejected_keys(line: str) -> Iterator[tuple[str, str]]:
    if line.strip():
        key = json.loads(line).get("key")
        if key:
            yield key, "rejected"


def reject_identity(r: Reject) -> str:
    """What makes two keyless reject lines the same event (their detail names the file and line)."""
    return json.dumps([r.dataset, r.source_id, r.stage, r.reason, r.detail])


def _keyless_identities(line: str) -> Iterator[tuple[str, int]]:
    if line.strip():
        r = Reject.model_validate_json(line)
        if r.key is None:
            yield reject_identity(r), 1


class ReadFinishedKeys(beam.PTransform):
    """PBegin → PCollection[(key, 'written' | 'rejected')] from the manifests and reject files of `state`."""

    def __init__(self, state: OutputState) -> None:
        super().__init__()
        self.state = state

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        written = (
            pbegin
            | "Manifests" >> beam.Create(self.state.manifests)
            | "ManifestKeys" >> beam.FlatMap(_manifest_keys)
        )
        if not self.state.reject_files:
            return written
        rejected = (
            pbegin
            | "RejectFiles" >> beam.Create(self.state.reject_files)
            | "RejectLines" >> beam.io.ReadAllFromText()
            | "RejectKeys" >> beam.FlatMap(_rejected_keys)
        )
        return (written, rejected) | "Finished" >> beam.Flatten()


def _recorded_hashes(line: str) -> Iterator[tuple[str, str, str]]:
    if line.strip():
        key, sha, phash = json.loads(line)
        yield key, sha, phash


class ReadFinishedHashes(beam.PTransform):
    """PBegin → PCollection[(key, sha256, phash)]: what earlier attempts' dedup saw (`dedup_hashes/`)."""

    def __init__(self, state: OutputState) -> None:
        super().__init__()
        self.state = state

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "HashFiles" >> beam.Create(self.state.hash_files)
            | "HashLines" >> beam.io.ReadAllFromText()
            | "Hashes" >> beam.FlatMap(_recorded_hashes)
        )


class SkipFinished(beam.DoFn):
    """Drops items whose key is finished (side input `finished`: a multimap looked up per key)."""

    def process(self, item: Any, finished: Any) -> Iterator[Any]:
        from ..stage import Counters

        if list(finished[item.key]):
            Counters("resume").count("skipped")
        else:
            yield item


def _emit_new(group: tuple[str, dict[str, list]]) -> Iterator[Reject]:
    _, parts = group
    yield from parts["new"][len(parts["old"]) :]


class DropRecordedRejects(beam.PTransform):
    """Rejects a resumed run emits again for inputs already recorded (it re-reads sources, and re-checks
    images when dedup needs their hashes) are dropped: keyed ones whose key is finished, keyless ones
    as many times as the recorded files already hold them."""

    def __init__(self, state: OutputState, finished: beam.PCollection) -> None:
        super().__init__()
        self.state = state
        self.finished = finished

    def expand(self, rejects: beam.PCollection) -> beam.PCollection:
        keyed, keyless = rejects | "KeyedOrNot" >> beam.Partition(lambda r, _n: 0 if r.key else 1, 2)
        new_keyed = keyed | "SkipFinishedKeys" >> beam.ParDo(
            _SkipFinishedReject(), finished=beam.pvalue.AsMultiMap(self.finished)
        )
        old = (
            keyless.pipeline
            | "RecordedRejectFiles" >> beam.Create(self.state.reject_files)
            | "RecordedLines" >> beam.io.ReadAllFromText()
            | "RecordedKeyless" >> beam.FlatMap(_keyless_identities)
        )
        new_keyless = (
            {"new": keyless | "Identity" >> beam.Map(lambda r: (reject_identity(r), r)), "old": old}
            | "JoinRecorded" >> beam.CoGroupByKey()
            | "EmitNew" >> beam.FlatMap(_emit_new)
        )
        return (new_keyed, new_keyless) | "NewRejects" >> beam.Flatten()


class _SkipFinishedReject(beam.DoFn):
    def process(self, reject: Reject, finished: Any) -> Iterator[Reject]:
        if not list(finished[reject.key]):
            yield reject

