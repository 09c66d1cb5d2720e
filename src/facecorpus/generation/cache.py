"""Content-addressed response cache: never pay twice for the same request.

The key is the sha256 of everything that determines a response: the endpoint's identity, the model,
the full messages (each image by its sha256), the parameters (temperature, max_tokens, seed, …), the
response schema and the prompt set's version. A re-run of a recipe finds every response it already
bought; changing a prompt changes the key and buys new ones.

Entries are small JSON files `<root>/<key[:2]>/<key>.json` holding the response's content, finish
reason, usage, cost and model — never the request (it may hold web text and images) and never a
credential. The root is a local folder (written atomically) or any Beam filesystem (gs://, s3://).

`SingleFlight` makes identical requests in flight at once (the same image and labels twice in a
run) wait for the first one's answer instead of buying it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from apache_beam.io.filesystems import FileSystems

from ..prompting.render import hashed_messages

DEFAULT_DIR = "~/.cache/facecorpus/llm"
ENV_DIR = "FACECORPUS_LLM_CACHE"


def default_cache_dir() -> str:
    return os.environ.get(ENV_DIR) or str(Path(DEFAULT_DIR).expanduser())


_dumps = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode  # what json.dumps(…, sort_keys=True, ensure_ascii=False) gives

#: serialised response schemas by id (the object is held so its id is not reused, a copy to see a change)
_SCHEMAS: dict[int, tuple[Any, Any, str]] = {}
_SCHEMAS_MAX = 256


def _schema_json(value: Any) -> str:
    """`_dumps(value)`, remembered for the few schema objects a run shares between all its requests
    (serialising one was ~40% of a key). A hit needs the very object, still equal to the copy taken
    when it was serialised (a dict compare is ~0.5 us, its serialisation ~20 us)."""
    if not isinstance(value, dict):
        return _dumps(value)
    hit = _SCHEMAS.get(id(value))
    if hit is not None and hit[0] is value and hit[1] == value:
        return hit[2]
    text = _dumps(value)
    if len(_SCHEMAS) >= _SCHEMAS_MAX:
        _SCHEMAS.clear()
    _SCHEMAS[id(value)] = (value, json.loads(text), text)
    return text


def cache_key(endpoint: str, body: dict[str, Any], prompt_version: str) -> str:
    """sha256 identifying a request: endpoint + body (images hashed) + prompt set version.

    The hashed text is exactly `json.dumps({"body": {**body, "messages": hashed_messages(…)},
    "endpoint": …, "prompt_version": …}, sort_keys=True, ensure_ascii=False)` — the key every cache
    written so far uses — built piece by piece so that the response schema, the same object in every
    request of a prompt set, is serialised once (`_schema_json`), not once per lookup."""
    parts = []
    for name in sorted(body):
        value = body[name]
        if name == "messages":
            text = _dumps(hashed_messages(value))
        elif name == "response_format":
            text = _schema_json(value)
        else:
            text = _dumps(value)
        parts.append(f"{_dumps(name)}: {text}")
    material = f'{{"body": {{{", ".join(parts)}}}, "endpoint": {_dumps(endpoint)}, "prompt_version": {_dumps(prompt_version)}}}'
    return hashlib.sha256(material.encode()).hexdigest()


class ResponseCache:
    """get/put of response entries by key; `root=None` is a disabled cache (always misses)."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        self.remote = bool(root) and "://" in str(root)
        # local paths are built as strings: pathlib's parsing was ~10% of a request's cache work
        self._local_root = os.path.expanduser(str(root)) if root and not self.remote else ""
        self._made: set[str] = set()

    @property
    def local(self) -> bool:
        """An enabled cache in a local folder (reads cost a file open, no network)."""
        return bool(self.root) and not self.remote

    def path(self, key: str) -> str:
        assert self.root is not None
        if self.remote:
            return FileSystems.join(self.root, key[:2], f"{key}.json")
        return os.path.join(self._local_root, key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.root:
            return None
        path = self.path(key)
        try:
            if self.remote:
                if not FileSystems.exists(path):
                    return None
                with FileSystems.open(path) as f:
                    raw = f.read()
            else:
                with open(path, "rb") as f:
                    raw = f.read()
            entry = json.loads(raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # a torn or foreign file counts as a miss; it will be rewritten
            return None
        return entry if isinstance(entry, dict) and entry.get("key") == key else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        if not self.root:
            return
        data = json.dumps({**entry, "key": key}, sort_keys=True, ensure_ascii=False).encode()
        path = self.path(key)
        if self.remote:  # object stores publish an object only when its upload completes
            with FileSystems.create(path) as f:
                f.write(data)
            return
        folder = os.path.dirname(path)
        if folder not in self._made:  # one mkdir per folder, not per entry (slow on overlay filesystems)
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        # a name no other writer uses at the same time (process, thread); mkstemp's random names cost
        # an os.urandom and a reseed per entry, ~0.1 ms of a request's CPU
        tmp = os.path.join(folder, f".tmp-{key[:16]}-{os.getpid()}-{threading.get_ident()}.json")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # readers see the whole entry or none
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


T = TypeVar("T")


class SingleFlight:
    """Identical keys in flight at once run once: followers wait for the leader, then look again.

    `run(key, lookup, fetch)`: the leader calls `fetch()`; a follower waits until the leader is done
    and returns `lookup()` (the leader's result, through the cache) — or, when that is None (the
    leader failed, or the cache is off), calls `fetch()` itself.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def run(self, key: str, lookup: Callable[[], T | None], fetch: Callable[[], T]) -> T:
        with self._lock:
            leader = key not in self._inflight
            done = self._inflight.setdefault(key, threading.Event())
        if not leader:
            done.wait()
            found = lookup()
            return found if found is not None else fetch()
        try:
            return fetch()
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            done.set()
