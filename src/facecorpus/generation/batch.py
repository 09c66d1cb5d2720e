"""OpenAI Batch API mode: the first-round requests go out as JSONL files at half price.

    items ─▶ PendingRequests (requests not in the cache, custom_id = cache key) ─▶ GroupByKey(bucket)
          ─▶ SubmitAndWait: split into files (≤ 50,000 requests, ≤ 200 MB), upload, create batch,
             persist its id, poll with backoff, download output + error files, store every result
             in the response cache ─▶ one report per bucket (failures by custom_id, batch ids done)

The generate stage then reads every first-round response from the cache (a miss is the batch's
failure for that request → a reject). Re-asks (refusal, cut-off, bad JSON) go online.

Resuming: each batch's id, input file and custom_ids are written to `<state_dir>/<batch-name>.json`
the moment it is created. A later run attaches pending requests to a batch it already submitted
(polling or re-downloading it) instead of submitting again; only requests whose batch finished
without a result for them are submitted anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ..errors import UserError
from ..stage import WorkItem
from .accounting import Spend, TokenUsage, cost_usd, price_for
from .cache import ResponseCache, cache_key
from .config import GenerationConfig
from .endpoint import chat_body, endpoint_id
from .ledger import process_ledger
from .retries import describe_error, redact
from .secrets import api_key as api_key_for

log = logging.getLogger("facecorpus")

ENDPOINT_PATH = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}
STATE_DIR = "llm_batches"


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One line of a Batch API input file."""
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT_PATH, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def plan_files(sizes: dict[str, int], max_requests: int, max_bytes: int) -> list[list[str]]:
    """custom_ids split into input files within the limits, deterministically (sorted ids)."""
    files: list[list[str]] = []
    used = 0
    for cid in sorted(sizes):
        size = sizes[cid]
        if size > max_bytes:
            raise UserError(f"one Batch API request is {size} bytes, over generation.batch.max_bytes_per_file")
        if not files or len(files[-1]) >= max_requests or used + size > max_bytes:
            files.append([])
            used = 0
        files[-1].append(cid)
        used += size
    return files


def batch_name(custom_ids: Iterable[str]) -> str:
    """A batch's stable name: the hash of its sorted custom_ids."""
    return hashlib.sha256("\n".join(sorted(custom_ids)).encode()).hexdigest()[:32]


class PendingRequests(beam.DoFn):
    """(bucket, (custom_id, request line)) for each first-round request not already in the cache."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.endpoint = endpoint_id(cfg.openai.base_url, cfg.openai.local_model)

    def setup(self) -> None:
        self.cache = ResponseCache(self.cache_dir)

    def process(self, item: WorkItem) -> Iterator[tuple[int, tuple[str, bytes]]]:
        prompt = item.prompt
        for r in prompt.requests:
            body = chat_body(self.cfg, r.messages, r.response_format)
            key = cache_key(self.endpoint, body, prompt.prompt_version)
            if key not in self.cache:
                yield int(key[:8], 16) % self.cfg.batch.files, (key, request_line(key, body))


@dataclass
class _Batch:
    name: str
    state: dict[str, Any]
    pending: set[str]


class SubmitAndWait(beam.DoFn):
    """One bucket of pending requests → batches submitted (or re-attached), awaited, cached."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, state_dir: str, out: str | None = None) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.state_dir = state_dir
        self.out = out

    def setup(self) -> None:
        import openai

        o = self.cfg.openai
        self._key = api_key_for(o, where="on this worker")
        self.client = openai.OpenAI(api_key=self._key or "no-key-required", base_url=o.base_url, max_retries=3,
                                    timeout=max(o.request_timeout(), 600.0))
        self.cache = ResponseCache(self.cache_dir)
        self.ledger = process_ledger(self.out)

    # --------------------------------------------------------------------------------------- state files

    def _state_path(self, name: str) -> str:
        return FileSystems.join(self.state_dir, f"{name}.json")

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        data = json.dumps(state, indent=1, sort_keys=True).encode()
        if "://" in self.state_dir:
            with FileSystems.create(self._state_path(name)) as f:
                f.write(data)
            return
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self._state_path(name))

    def _known_states(self) -> dict[str, dict[str, Any]]:
        try:
            found = FileSystems.match([FileSystems.join(self.state_dir, "*.json")])[0].metadata_list
        except Exception:  # noqa: BLE001 - no folder yet: nothing submitted
            return {}
        states = {}
        for m in found:
            with FileSystems.open(m.path) as f:
                try:
                    states[m.path.rsplit("/", 1)[-1][: -len(".json")]] = json.loads(f.read())
                except ValueError:
                    continue
        return states

    # ------------------------------------------------------------------------------------------ process

    def process(self, element: tuple[int, Iterable[tuple[str, bytes]]]) -> Iterator[dict[str, Any]]:
        _, values = element
        sizes: dict[str, int] = {}
        for cid, line in values:
            sizes[cid] = len(line)
        batches: list[_Batch] = []
        unassigned = set(sizes)
        for name, state in sorted(self._known_states().items()):
            if state.get("downloaded") or not state.get("batch_id"):
                continue  # finished earlier: its requests without a result are submitted anew
            mine = unassigned & set(state.get("custom_ids", []))
            if mine:
                batches.append(_Batch(name, state, mine))
                unassigned -= mine
                log.info("Batch API: re-attaching to %s (%d requests)", state["batch_id"], len(mine))
        b = self.cfg.batch
        files = plan_files({c: sizes[c] for c in unassigned}, b.max_requests_per_file, b.max_bytes_per_file)
        if files:
            batches.extend(self._submit(files, values))
        spend = Spend()
        failures: dict[str, str] = {}
        fresh: list[str] = []
        self._await(batches, spend, failures, fresh)
        spend.flush()
        yield {"failures": failures, "fresh_batch_ids": fresh}

    def _submit(self, files: list[list[str]], values: Iterable[tuple[str, bytes]]) -> list[_Batch]:
        index = {cid: i for i, ids in enumerate(files) for cid in ids}
        out: list[_Batch] = []
        with tempfile.TemporaryDirectory(prefix="facecorpus-batch-") as tmp:
            paths = [Path(tmp) / f"requests-{i:04d}.jsonl" for i in range(len(files))]
            handles = [p.open("wb") for p in paths]
            written: set[str] = set()
            try:
                for cid, line in values:  # second pass over the group: write each line once
                    if cid in index and cid not in written:
                        handles[index[cid]].write(line)
                        written.add(cid)
            finally:
                for h in handles:
                    h.close()
            for ids, path in zip(files, paths, strict=True):
                name = batch_name(ids)
                try:
                    with path.open("rb") as f:
                        uploaded = self.client.files.create(file=(f"facecorpus-{name}.jsonl", f), purpose="batch")
                    batch = self.client.batches.create(
                        input_file_id=uploaded.id,
                        endpoint=ENDPOINT_PATH,
                        completion_window="24h",
                        metadata={"facecorpus_batch": name},
                    )
                except Exception as e:  # noqa: BLE001 - the requests become retryable rejects
                    detail = f"could not submit the batch: {describe_error(e, self._secrets())}"
                    out.append(_Batch(name, {"error": detail, "custom_ids": ids}, set(ids)))
                    continue
                state = {
                    "batch_id": batch.id,
                    "input_file_id": uploaded.id,
                    "custom_ids": sorted(ids),
                    "status": batch.status,
                    "submitted_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
                    "downloaded": False,
                }
                self._write_state(name, state)  # before waiting: a killed run finds it
                log.info("Batch API: submitted %s with %d requests", batch.id, len(ids))
                out.append(_Batch(name, state, set(ids)))
        return out

    def _secrets(self) -> tuple[str, ...]:
        return (self._key,) if self._key else ()

    def _await(self, batches: list[_Batch], spend: Spend, failures: dict[str, str], fresh: list[str]) -> None:
        b = self.cfg.batch
        deadline = time.monotonic() + b.max_wait_h * 3600
        delay = b.poll_initial_s
        waiting = []
        for batch in batches:
            if "error" in batch.state:
                failures.update({cid: batch.state["error"] for cid in batch.pending})
            else:
                waiting.append(batch)
        while waiting:
            still = []
            for batch in waiting:
                try:
                    remote = self.client.batches.retrieve(batch.state["batch_id"])
                except Exception as e:  # noqa: BLE001 - a failed poll is retried at the next round
                    log.warning("Batch API: polling %s failed: %s", batch.state["batch_id"], describe_error(e, self._secrets()))
                    still.append(batch)
                    continue
                if remote.status in TERMINAL:
                    self._collect(batch, remote, spend, failures)
                    fresh.append(batch.state["batch_id"])
                else:
                    still.append(batch)
            waiting = still
            if not waiting:
                break
            if time.monotonic() + delay > deadline:
                for batch in waiting:
                    why = (f"batch {batch.state['batch_id']} still running after "
                           f"{b.max_wait_h:g} h; run again to pick it up")
                    failures.update({cid: why for cid in batch.pending})
                break
            time.sleep(delay)
            delay = min(delay * 1.5, b.poll_max_s)

    def _download(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self.client.files.content(file_id).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _collect(self, batch: _Batch, remote: Any, spend: Spend, failures: dict[str, str]) -> None:
        """Results into the cache, errors into `failures`, the state marked downloaded."""
        got: set[str] = set()
        model_price = price_for(self.cfg.prices, chat_body(self.cfg, [], None)["model"])
        for row in self._download(getattr(remote, "output_file_id", None)):
            cid = row.get("custom_id")
            response = row.get("response") or {}
            body = response.get("body") or {}
            if cid not in batch.pending:
                continue
            if response.get("status_code") != 200 or not body.get("choices"):
                failures[cid] = self._row_error(row)
                got.add(cid)
                continue
            usage = TokenUsage.from_api(body.get("usage"))
            choice = body["choices"][0]
            message = choice.get("message") or {}
            dollars = cost_usd(model_price, usage, batch=True, batch_discount=self.cfg.batch_discount)
            self.cache.put(cid, {
                "content": message.get("content"),
                "refusal": message.get("refusal"),
                "finish_reason": choice.get("finish_reason"),
                "model": body.get("model"),
                "usage": {"prompt": usage.prompt, "completion": usage.completion, "cached": usage.cached},
                "cost_usd": dollars,
                "batch_id": batch.state["batch_id"],
                "created_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
            })
            if self.ledger is not None:
                self.ledger.batch_result(cid, usage, dollars)
            spend.fresh_response(usage, dollars)
            spend.add("batch_requests")
            got.add(cid)
        for row in self._download(getattr(remote, "error_file_id", None)):
            cid = row.get("custom_id")
            if cid in batch.pending and cid not in got:
                failures[cid] = self._row_error(row)
                got.add(cid)
        errors = getattr(getattr(remote, "errors", None), "data", None) or []
        why = "; ".join(str(getattr(e, "message", e)) for e in errors)[:200]
        for cid in batch.pending - got:
            failures[cid] = f"batch {remote.id} ended '{remote.status}' without a result" + (f": {why}" if why else "")
        batch.state.update({
            "status": remote.status,
            "output_file_id": getattr(remote, "output_file_id", None),
            "error_file_id": getattr(remote, "error_file_id", None),
            "downloaded": True,
            "finished_at": datetime.now(tz=UTC).replace(microsecond=0).isoformat(),
        })
        self._write_state(batch.name, batch.state)

    def _row_error(self, row: dict[str, Any]) -> str:
        err = row.get("error") or {}
        response = row.get("response") or {}
        body = response.get("body") or {}
        message = err.get("message") or (body.get("error") or {}).get("message") or "no result"
        status = response.get("status_code")
        return redact((f"HTTP {status}: " if status else "") + " ".join(str(message).split())[:200], self._secrets())


class SubmitBatches(beam.PTransform):
    """Rendered items → one report per bucket after its batches finished (see module docstring)."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, out: str | None) -> None:
        super().__init__()
        if cache_dir is None:
            raise UserError("generation.mode: batch needs the response cache (generation.cache.enabled: true)")
        state_dir = cfg.batch.state_dir or (FileSystems.join(out, STATE_DIR) if out else None)
        if state_dir is None:
            raise UserError("generation.batch.state_dir is needed when the output folder is unknown")
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.state_dir = state_dir
        self.out = out

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return (
            items
            | "PendingRequests" >> beam.ParDo(PendingRequests(self.cfg, self.cache_dir))
            | "ByBucket" >> beam.GroupByKey()
            | "SubmitAndWait" >> beam.ParDo(SubmitAndWait(self.cfg, self.cache_dir, self.state_dir, self.out))
        )
