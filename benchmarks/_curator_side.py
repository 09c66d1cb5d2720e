"""The bespokelabs-curator side of benchmarks/llm.py, run by benchmarks/.venv-curator/bin/python (its own venv).

    python benchmarks/_curator_side.py BODIES.json RESULT.json

BODIES.json: {"base_url": ..., "concurrency": C, "bodies": [chat body, ...]} — the very bodies ours
sends. Curator's online path for an OpenAI-compatible endpoint (`backend="openai"`, aiohttp, its own
rate limiter and retries, its request/response files and the Arrow dataset it builds at the end) runs
once over all of them with `max_concurrent_requests = C`; RESULT.json gets the CPU seconds of this
process (and of any child it started) from just before the call to just after it, a 20 ms CPU
sampler's samples (to read the active window against the server's arrivals) and the answers it got.

What is changed so that it runs offline, and only that:
- tiktoken's cl100k_base is a download: the processor's token encoding is replaced by one that counts
  a text's tokens the way the loopback server reports them (len(text) // 4, at least 1). Curator uses
  these counts only for its token-per-minute budget, set here far above what the run needs.
- litellm reads its model cost map from the network unless LITELLM_LOCAL_MODEL_COST_MAP is set: it is
  set (the map shipped in the package is used).
- telemetry is off (TELEMETRY_ENABLED=False), the cache goes to a temporary folder (CURATOR_CACHE_DIR),
  no viewer (CURATOR_VIEWER unset).
Each body's `model` and `messages` become curator's model name and the row's prompt (a list of message
dicts, passed through as they are, image parts included); every other key (`response_format`,
`max_tokens`, `seed`, `temperature`) goes in `generation_params`, which curator copies into the
request as it is. Curator also sends one request of its own before the run (`messages: []`, to read
rate-limit headers) and, for an explicit base_url, none to check structured output (no
`response_format` model is given to it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _llm_server import CpuSampler, cpu_s  # noqa: E402


class _ServerCounts:
    """Stands in for tiktoken's Encoding: the loopback server's token count of a text (len // 4)."""

    name = "server-count"

    def encode(self, text: str, **_: object) -> range:
        return range(max(1, len(text) // 4))


def main() -> None:
    if len(sys.argv) != 3:  # `make bench` runs every benchmarks/*.py: this one is benchmarks/llm.py's helper
        print("benchmarks/_curator_side.py is run by benchmarks/llm.py (BODIES.json RESULT.json); nothing to do alone")
        return
    spec = json.loads(Path(sys.argv[1]).read_text())
    tmp = tempfile.mkdtemp(prefix="bench-curator-")
    os.environ.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "TELEMETRY_ENABLED": "False",
                       "CURATOR_CACHE_DIR": tmp, "OPENAI_API_KEY": "none", "CURATOR_DISABLE_RICH_DISPLAY": "1"})
    os.environ.pop("CURATOR_VIEWER", None)
    from bespokelabs import curator
    from bespokelabs.curator.request_processor.online import openai_online_request_processor as oai

    oai.OpenAIOnlineRequestProcessor.get_token_encoding = lambda self: _ServerCounts()

    bodies = spec["bodies"]
    model = bodies[0]["model"]
    params = {k: v for k, v in bodies[0].items() if k not in ("model", "messages")}
    assert all({k: v for k, v in b.items() if k not in ("model", "messages")} == params for b in bodies)

    class Ask(curator.LLM):
        def prompt(self, row: dict) -> list:
            return json.loads(row["messages"])

        def parse(self, row: dict, response: object) -> dict:
            return {"i": row["i"], "answer": response if isinstance(response, str) else json.dumps(response)}

    # as JSON text: an Arrow column cannot hold a system message's string content beside a user
    # message's list of parts
    rows = [{"i": i, "messages": json.dumps(b["messages"])} for i, b in enumerate(bodies)]
    sampler = CpuSampler(children=True)
    cpu0 = cpu_s(children=True)
    t0 = time.time()
    llm = Ask(model_name=model, backend="openai", generation_params=params,
              backend_params={"base_url": spec["base_url"], "api_key": "none",
                              "max_concurrent_requests": spec["concurrency"], "max_requests_per_minute": 10**8,
                              "max_tokens_per_minute": 10**12, "max_retries": 0, "require_all_responses": False})
    dataset = llm(rows)
    t1 = time.time()
    cpu = cpu_s(children=True) - cpu0
    sampler.stop()
    answers = len(dataset.dataset)
    Path(sys.argv[2]).write_text(json.dumps({"cpu_s": cpu, "t0": t0, "t1": t1, "answers": answers,
                                             "samples": sampler.samples}))


if __name__ == "__main__":
    main()
