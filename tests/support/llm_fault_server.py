"""A scripted OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

It speaks enough of the API for facecorpus: `POST /v1/chat/completions`, `GET /v1/models`, and the
Batch API's `POST /v1/files`, `GET /v1/files/{id}[/content]`, `POST /v1/batches`,
`GET /v1/batches/{id}`. Answers are valid by default (a JSON instance of the request's json_schema,
or a plain sentence); `Rule`s script faults:

    429 (with Retry-After), 500, 503, 400, 401 (echoing a masked key, like OpenAI does), timeout
    (answers after `timeout_sleep_s`), disconnect (closes the socket), bad_body (200 with HTML),
    invalid_json, truncated (finish_reason "length"), refusal (the API's `refusal` field),
    refusal_text (a refusal sentence as content), empty

A rule applies to requests whose text contains `when` (any request if None), `times` times (always if
None), first matching rule wins. Every request is recorded (`requests`) with its arrival time, and the
server tracks the most requests it ever had in flight (`max_in_flight`).

With `slots=N` it behaves like a model server with N decoding slots (llama.cpp, vLLM with a small
batch): N chat requests are served at once, each for a service time drawn from `service_s=(lo, hi)`
(seeded), the rest wait in a FIFO queue (`queue_max` bounds it; beyond it the server answers 503). A
client that gives up does not free a slot early: the server finishes what it started, as real
servers do. `served` counts answers actually delivered, `wasted` those whose client had left.

Used by tests/test_generation*.py, the trust engineer's chaos tests, and benchmarks/llm.py (run as
`python -m tests.support.llm_fault_server --port P --latency 0.2` in a child process).
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OK_TEXT = "The face appears calm and evenly lit, with a neutral expression and the head turned slightly left."
REFUSAL = "I'm sorry, but I can't help with identifying people's ethnicity or gender from images."
WORDS = {
    "caption": "A calm face photographed in soft, even light.",
    "question": "What does this face show?",
    "answer": "The face is calm and evenly lit, with a neutral expression.",
}


@dataclass
class Rule:
    fault: str
    times: int | None = None
    when: str | None = None
    retry_after: float | None = None
    first_turn_only: bool = False  # never a follow-up (a re-ask carries an assistant turn): keeps counts exact


@dataclass
class Recorded:
    t: float
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    fault: str | None = None
    wall: float = 0.0  # time.time() of arrival, comparable across processes
    raw: bytes = b""  # the request body exactly as it arrived


def _is_follow_up(body: Any) -> bool:
    return isinstance(body, dict) and any(m.get("role") == "assistant" for m in body.get("messages", []))


def _text_of(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    parts = []
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts += [p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


def instance_of(schema: dict[str, Any], name: str = "") -> Any:
    """A small valid instance of a JSON schema (objects, strings with maxLength, arrays, enums)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: instance_of(v, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance_of(schema.get("items", {}), name) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    text = WORDS.get(name, OK_TEXT)
    return text[: schema.get("maxLength", len(text))]


def _client_left(h: BaseHTTPRequestHandler) -> bool:
    """True when the client closed its connection while we worked (a client that timed out): a write
    would still succeed into the socket buffer, so look for the end of stream instead."""
    try:
        readable, _, _ = select.select([h.connection], [], [], 0)
        return bool(readable) and h.connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, _, data = part.partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode() if b'name="' in head else ""
        fields[name] = data[:-2] if data.endswith(b"\r\n") else data
    return fields


class FaultServer:
    """Start with `with FaultServer(rules=[...]) as srv:`; `srv.base_url` ends in /v1."""

    def __init__(
        self,
        rules: list[Rule] | None = None,
        latency_s: float = 0.0,
        timeout_sleep_s: float = 3.0,
        model: str = "fake-model",
        answer: Callable[[dict[str, Any]], str | None] | None = None,
        require_key: str | None = None,
        batch_polls: int = 1,
        batch_fault: str | None = None,
        modalities: list[str] | None = None,
        slots: int | None = None,
        service_s: tuple[float, float] = (0.0, 0.0),
        queue_max: int | None = None,
        seed: int = 0,
    ) -> None:
        self.rules = list(rules or [])
        self.latency_s = latency_s
        self.timeout_sleep_s = timeout_sleep_s
        self.model = model
        self.answer = answer
        self.require_key = require_key
        self.batch_polls = batch_polls
        self.batch_fault = batch_fault
        self.modalities = modalities
        self.requests: list[Recorded] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.slots = slots
        self.service_s = service_s
        self.queue_max = queue_max
        self._slot_sem = threading.Semaphore(slots) if slots else None
        self._rng = random.Random(seed)
        self.queued = 0
        self.max_queued = 0
        self.served = 0
        self.wasted = 0
        self.busy_s = 0.0  # slot-seconds of service given, delivered or not
        self._go = threading.Event()  # cleared by hold(): chat answers wait until release()
        self._go.set()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self, port: int = 0) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                server._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server._dispatch(self, "POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # read by listen() in the constructor: 64 clients connect at once

        self._httpd = Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- inspection

    def hold(self) -> None:
        """From now on chat requests are received but not answered, until `release()` (tests freeze
        a client with requests in flight this way, then kill it)."""
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def count(self, fault: str | None = None) -> int:
        return sum(1 for r in self.chat_requests() if fault is None or r.fault == fault)

    # ---------------------------------------------------------------------------------------- routing

    def _pick(self, body: Any) -> Rule | None:
        text = _text_of(body)
        with self._lock:
            for rule in self.rules:
                if rule.when is not None and rule.when not in text:
                    continue
                if rule.first_turn_only and _is_follow_up(body):
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                return rule
        return None

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        ctype = h.headers.get("Content-Type", "")
        body: Any = raw
        if "json" in ctype and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        record = Recorded(time.monotonic(), method, path, {k.lower(): v for k, v in h.headers.items()}, body,
                          wall=time.time(), raw=raw)
        with self._lock:
            self.requests.append(record)
        if self.require_key is not None and h.headers.get("Authorization") != f"Bearer {self.require_key}":
            given = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            masked = given[:3] + "*" * 8 + given[-4:] if len(given) > 8 else "***"
            self._send(h, 401, {"error": {"message": f"Incorrect API key provided: {masked}.", "type": "invalid_request_error"}})
            return
        if method == "GET" and path == "/_stats":  # for benchmarks running the server in another process
            with self._lock:
                chats = sorted(r.wall for r in self.requests if r.path.endswith("/chat/completions"))
            stats = {"chat_requests": len(chats), "first": min(chats, default=None),
                     "last": max(chats, default=None), "max_in_flight": self.max_in_flight,
                     "served": self.served, "wasted": self.wasted, "max_queued": self.max_queued,
                     "busy_s": self.busy_s}
            if "arrivals=1" in h.path:
                stats["arrivals"] = chats
            self._send(h, 200, stats)
            return
        if method == "GET" and path.rstrip("/") == "/v1/models":
            entry: dict[str, Any] = {"id": self.model, "object": "model"}
            if self.modalities is not None:
                entry["architecture"] = {"input_modalities": self.modalities}
            self._send(h, 200, {"object": "list", "data": [entry]})
        elif method == "POST" and path == "/v1/chat/completions":
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            left = False

            def leave() -> None:  # before the answer goes out: a client may reuse its slot the moment it has it
                nonlocal left
                if not left:
                    left = True
                    with self._lock:
                        self.in_flight -= 1

            try:
                self._chat(h, body, record, leave)
            finally:
                leave()
        elif method == "POST" and path == "/v1/files":
            self._upload(h, raw, ctype)
        elif method == "GET" and path.startswith("/v1/files/"):
            self._file(h, path)
        elif method == "POST" and path == "/v1/batches":
            self._create_batch(h, body)
        elif method == "GET" and path.startswith("/v1/batches/"):
            self._get_batch(h, path.rsplit("/", 1)[-1])
        else:
            self._send(h, 404, {"error": {"message": f"no route {method} {path}"}})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None, ctype: str = "application/json") -> bool:
        """Send one response; False when the client had already gone."""
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left: expected here
            h.close_connection = True
            return False
        return True

    # ------------------------------------------------------------------------------------------- chat

    def completion(self, body: dict[str, Any], fault: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, payload, headers) for one chat request under `fault` (None: a valid answer)."""
        if fault in ("429", "500", "503", "400", "401"):
            kind = {"429": "rate_limit_error", "400": "invalid_request_error", "401": "invalid_request_error"}
            return int(fault), {"error": {"message": f"scripted {fault}", "type": kind.get(fault, "server_error")}}, {}
        rf = body.get("response_format") or {}
        schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
        custom = self.answer(body) if self.answer else None
        content: str | None = custom if custom is not None else (
            json.dumps(instance_of(schema)) if schema else OK_TEXT
        )
        refusal = None
        finish = "stop"
        if fault == "invalid_json":
            content = "Here is the description: {caption: not json"
        elif fault == "truncated":
            content = (content or "")[: max(1, len(content or "") // 2)]
            finish = "length"
        elif fault == "refusal":
            content, refusal = None, REFUSAL
        elif fault == "refusal_text":
            content = REFUSAL
        elif fault == "empty":
            content = ""
        prompt_tokens = max(1, len(_text_of(body)) // 4)
        completion_tokens = max(1, len(content or refusal or "") // 4)
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0}},
        }
        return 200, payload, {}

    def _chat(self, h: BaseHTTPRequestHandler, body: Any, record: Recorded, leave: Callable[[], None]) -> None:
        rule = self._pick(body)
        fault = rule.fault if rule else None
        record.fault = fault or "ok"
        if self._slot_sem is not None and not self._serve_in_a_slot():
            leave()
            self._send(h, 503, {"error": {"message": "the server's queue is full", "type": "server_error"}})
            return
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault == "timeout":
            time.sleep(self.timeout_sleep_s)
        self._go.wait()
        leave()
        if fault == "disconnect":
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if fault == "bad_body":
            self._send(h, 200, None, raw=b"<html><body>502 Bad Gateway</body></html>", ctype="text/html")
            return
        if fault == "401":
            given = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            masked = given[:3] + "*" * 8 + given[-4:] if len(given) > 8 else "***"
            self._send(h, 401, {"error": {"message": f"Incorrect API key provided: {masked}.", "type": "invalid_request_error"}})
            return
        status, payload, headers = self.completion(body if isinstance(body, dict) else {}, fault)
        if rule is not None and rule.retry_after is not None:
            headers["Retry-After"] = f"{rule.retry_after:g}"
        delivered = not _client_left(h) and self._send(h, status, payload, headers)
        if status == 200:
            with self._lock:
                if delivered:
                    self.served += 1
                else:
                    self.wasted += 1

    def _serve_in_a_slot(self) -> bool:
        """Wait in the queue for a slot, hold it for one service time; False when the queue is full."""
        assert self._slot_sem is not None
        with self._lock:
            if self.queue_max is not None and self.queued >= self.queue_max:
                return False
            self.queued += 1
            self.max_queued = max(self.max_queued, self.queued)
            service = self._rng.uniform(*self.service_s)
        self._slot_sem.acquire()
        with self._lock:
            self.queued -= 1
        try:
            time.sleep(service)
        finally:
            self._slot_sem.release()
            with self._lock:
                self.busy_s += service
        return True

    # ---------------------------------------------------------------------------------- files/batches

    def _new_file(self, content: bytes, purpose: str, filename: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:16]}"
        meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[fid] = {"meta": meta, "content": content}
        return meta

    def _upload(self, h: BaseHTTPRequestHandler, raw: bytes, ctype: str) -> None:
        fields = _multipart(raw, ctype)
        if "file" not in fields:
            self._send(h, 400, {"error": {"message": "no file part"}})
            return
        self._send(h, 200, self._new_file(fields["file"], fields.get("purpose", b"").decode(), "upload.jsonl"))

    def _file(self, h: BaseHTTPRequestHandler, path: str) -> None:
        parts = path.split("/")  # ['', 'v1', 'files', id, ('content')]
        f = self.files.get(parts[3])
        if f is None:
            self._send(h, 404, {"error": {"message": "no such file"}})
        elif len(parts) > 4 and parts[4] == "content":
            self._send(h, 200, None, raw=f["content"], ctype="application/octet-stream")
        else:
            self._send(h, 200, f["meta"])

    def _create_batch(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if body.get("input_file_id") not in self.files:
            self._send(h, 400, {"error": {"message": "unknown input_file_id"}})
            return
        bid = f"batch_{uuid.uuid4().hex[:16]}"
        batch = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
            "_polls": 0,
        }
        with self._lock:
            self.batches[bid] = batch
        self._send(h, 200, {k: v for k, v in batch.items() if not k.startswith("_")})

    def _get_batch(self, h: BaseHTTPRequestHandler, bid: str) -> None:
        batch = self.batches.get(bid)
        if batch is None:
            self._send(h, 404, {"error": {"message": "no such batch"}})
            return
        batch["_polls"] += 1
        if batch["status"] not in ("completed", "failed", "expired"):
            if self.batch_fault == "stuck" or batch["_polls"] <= self.batch_polls:
                batch["status"] = "in_progress"
            else:
                self._finish_batch(batch)
        self._send(h, 200, {k: v for k, v in batch.items() if not k.startswith("_")})

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        if self.batch_fault == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "scripted batch failure"}]}
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["content"].splitlines() if x.strip()]
        if self.batch_fault == "expired":
            lines = lines[: len(lines) // 2]
        out, err = [], []
        for line in lines:
            body = line["body"]
            rule = self._pick(body)
            status, payload, _ = self.completion(body, rule.fault if rule else None)
            with self._lock:
                self.requests.append(Recorded(time.monotonic(), "BATCH", "/v1/batch-line", {}, body, rule.fault if rule else "ok"))
            row = {"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": line["custom_id"],
                   "response": {"status_code": status, "request_id": uuid.uuid4().hex[:8], "body": payload},
                   "error": None}
            (out if status == 200 else err).append(row)
        batch["status"] = "expired" if self.batch_fault == "expired" else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        if out:
            batch["output_file_id"] = self._new_file(b"".join(json.dumps(r).encode() + b"\n" for r in out),
                                                     "batch_output", "output.jsonl")["id"]
        if err:
            batch["error_file_id"] = self._new_file(b"".join(json.dumps(r).encode() + b"\n" for r in err),
                                                    "batch_output", "errors.jsonl")["id"]


def main() -> None:
    ap = argparse.ArgumentParser(description="Run the fault server until killed (for benchmarks).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--model", default="fake-model")
    ap.add_argument("--slots", type=int, default=None, help="serve N at once, queue the rest")
    ap.add_argument("--service", type=float, nargs=2, default=(0.0, 0.0), metavar=("LO", "HI"),
                    help="service time of one request in a slot, uniform in [LO, HI] seconds")
    args = ap.parse_args()
    srv = FaultServer(latency_s=args.latency, model=args.model, slots=args.slots,
                      service_s=tuple(args.service)).start(args.port)
    print(srv.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
