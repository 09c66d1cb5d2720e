"""The OpenAI-compatible generator as a Beam `RemoteModelHandler`, for `RunInference`.

`create_client` runs once per worker process (RunInference shares it between the DoFn's threads):
it resolves the endpoint (`local` → the embedded llama.cpp server), reads the API key from the
environment variable the recipe *names* — on the worker, so the key is never pickled into the
pipeline graph — and builds an `LLMClient`. `request` submits a batch of items to the client's
thread pool (`openai.concurrency` requests in flight) and returns at once: each PredictionResult's
`inference` is a `PendingOutcome`. The stage's next step (`transform.AwaitOutcomes`, fused with
RunInference) lets items go as their answers arrive and holds back the input only when a bounded
number of requests is pending, so the pool never drains at a batch boundary (RunInference itself
runs one batch at a time and would wait for the slowest request of each before taking the next).

Beam's own retry layer is switched off (`num_retries=0`): tenacity inside the client is the only one,
and `request` never raises for an endpoint failure — those become per-item failures (rejects).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from typing import Any

from apache_beam.ml.inference.base import PredictionResult, RemoteModelHandler

from ..stage import WorkItem
from .client import LLMClient, PendingOutcome
from .config import GenerationConfig
from .endpoint import endpoint_id
from .ledger import process_ledger
from .secrets import api_key as api_key_for


def _never_retry(_: Exception) -> bool:
    return False


def requests_per_item(cfg: GenerationConfig, mode: str) -> int:
    if mode == "rewrite":
        return len(cfg.categories) + 1  # the caption and each answer (fewer when the templates skip one)
    return len(cfg.categories) if mode == "per_category" else 1


class OpenAIChatHandler(RemoteModelHandler[WorkItem, PredictionResult, LLMClient]):
    """RunInference handler: WorkItems carrying a rendered prompt → PredictionResult(item, outcome)."""

    def __init__(self, cfg: GenerationConfig, cache_dir: str | None, prompt_mode: str, out: str | None = None,
                 ledger_stage: str | None = None) -> None:
        super().__init__(namespace="facecorpus", num_retries=0, retry_filter=_never_retry)
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.out = out  # where the spend ledger goes (None: no ledger)
        self.ledger_stage = ledger_stage  # the tag of this stage's lines in the ledger (None: generation)
        per_item = requests_per_item(cfg, prompt_mode)
        # batches no longer wait for their answers (see AwaitOutcomes), so their size only sets how
        # many items are rendered between submissions
        wanted = cfg.openai.batch_requests or 8 * cfg.openai.concurrency
        self.items_per_batch = max(1, math.ceil(wanted / per_item))
        self.batch_requests = self.items_per_batch * per_item

    def create_client(self) -> LLMClient:
        o = self.cfg.openai
        slots = None
        if o.base_url == "local":
            from .local_server import server_slots, shared_local_server

            base_url = shared_local_server(o.local_model)
            api_key = None
            slots = server_slots(base_url)  # never more in flight than it decodes at once
        else:
            base_url = o.base_url
            api_key = api_key_for(o, where="on this worker")
        client = LLMClient(self.cfg, base_url, api_key, self.cache_dir, endpoint_id(o.base_url, o.local_model),
                           server_slots=slots, ledger=process_ledger(self.out), ledger_stage=self.ledger_stage)
        # Everything loaded so far (Beam, the pipeline, libraries, models) lives as long as the worker:
        # collect once, then exempt it from the cycle collector. Otherwise each full collection walks
        # those ~0.5 M objects holding the GIL — measured 0.2-0.5 s pauses of every request thread,
        # several per minute at 300 requests/s.
        gc.collect()
        gc.freeze()
        return client

    def request(
        self, batch: Sequence[WorkItem], model: LLMClient, inference_args: dict[str, Any] | None = None
    ) -> list[PredictionResult]:
        """Submit every request of the batch; inference = the item's PendingOutcome (never raises)."""
        out = []
        for item in batch:
            assert item.prompt is not None  # RenderPrompts ran first
            pending: PendingOutcome = model.submit(item.prompt, item.batch)
            out.append(PredictionResult(example=item, inference=pending))
        return out

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # fixed size: BatchElements' adaptive sizing would start at one item and grow slowly
        return {"min_batch_size": self.items_per_batch, "max_batch_size": self.items_per_batch}

    def get_num_bytes(self, batch: Sequence[WorkItem]) -> int:
        # the default pickles the whole batch just to measure it
        return sum(len(item.jpeg or b"") for item in batch)

    def get_metrics_namespace(self) -> str:
        return "facecorpus.llm"
