"""The recipe's `generation` section: which generator writes the text, the prompt set, and the
OpenAI-compatible endpoint with its pacing, retries, budgets, cache, prices and Batch API settings
(docs/generation.md). Pacing, retries, budgets, the cache's place and batch polling are execution-only:
cached answers are content-addressed, so none of them changes what is written.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import EXECUTION_ONLY, Config, PositiveInt
from ..records import DEFAULT_CATEGORIES

#: default request timeouts: a remote endpoint that takes longer is in trouble; the embedded server is
#: this run's own and only slow when the machine is (2 slots sharing a loaded 2-core CPU took over
#: 120 s a request for the demo's prompts), and retrying a slow request only throws its work away
REMOTE_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 1800.0


class LLMImageConfig(Config):
    """How the image goes along with a request (a base64 JPEG data URL)."""

    send: Literal["auto", "always", "never"] = Field(
        default="auto", description="auto: attach it unless the endpoint is the embedded text-only server."
    )
    max_side: PositiveInt = Field(default=512, description="Downscale so the longer side is at most this.")
    max_bytes: PositiveInt = Field(default=1_000_000, description="Re-encode at lower quality above this size.")
    jpeg_quality: int = Field(default=90, ge=30, le=100, description="JPEG quality of the attached image.")
    detail: Literal["auto", "low", "high"] | None = Field(default=None, description="OpenAI image detail; null: omit.")
    reencode: bool = Field(
        default=True,
        description="false: send the source file's own bytes when it is a JPEG (as FairFaceGPT did), never "
        "downscaled or re-encoded; other formats send the stored JPEG.",
    )


class OpenAIConfig(Config):
    """The OpenAI-compatible endpoint: OpenAI, vLLM, llama.cpp, … `base_url: local` is the embedded server."""

    base_url: str = Field(default="https://api.openai.com/v1", description="'local': the embedded llama.cpp server.")
    model: str = Field(default="gpt-4o-2024-11-20", description="Model name sent to the endpoint.")
    local_model: str = Field(default="smollm2", description="Model pack served when base_url is 'local'.")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY", description="NAME of the environment variable holding the key (never the key); local runs."
    )
    api_key_file: Annotated[str | None, EXECUTION_ONLY] = Field(
        default=None, description="A file holding the key, read on each worker: a mounted secret, or gs:// / s3://. "
        "Wins over api_key_secret and api_key_env."
    )
    api_key_secret: Annotated[str | None, EXECUTION_ONLY] = Field(
        default=None, description="Google Secret Manager name, projects/P/secrets/S[/versions/V], read on each worker "
        "with its service account (Dataflow). Wins over api_key_env."
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="null: the endpoint's default.")
    max_tokens: PositiveInt | None = Field(default=600, description="Longest answer per request (completion tokens); null: send none (the endpoint's own limit).")
    seed: int | None = Field(default=None, description="Sampling seed sent to the endpoint; null: none.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="More body fields, e.g. {frequency_penalty: 0.5} or llama.cpp's repeat_penalty."
    )
    timeout_s: Annotated[float | None, EXECUTION_ONLY] = Field(
        default=None, gt=0, description="Per request, from the moment it has a slot; null: 120 for a remote endpoint, "
        "1800 for the embedded server (this run's own, on a CPU that may be busy: a slow answer is still an answer).")
    concurrency: Annotated[PositiveInt, EXECUTION_ONLY] = Field(
        default=16, description="Most requests in flight per worker (for base_url 'local': at most the server's slots)."
    )
    adaptive_concurrency: Annotated[bool, EXECUTION_ONLY] = Field(
        default=True,
        description="Adapt the requests in flight to the endpoint (AIMD on 429s, 503s, timeouts and rising latency), "
        "up to concurrency; false: always concurrency.",
    )
    batch_requests: Annotated[PositiveInt | None, EXECUTION_ONLY] = Field(
        default=None, description="Requests per RunInference batch; null: 8 x concurrency."
    )
    image: LLMImageConfig = Field(default_factory=LLMImageConfig, description="How the image goes with each request.")
    reask: bool = Field(default=True, description="Re-ask once after a refusal, a cut-off or an unparsable answer; false: never.")
    refusal_message: str | None = Field(default=None, description="Corrective re-ask after a refusal; null: built-in.")
    on_category_failure: Literal["reject", "skip"] = Field(
        default="reject", description="A category that fails after the re-ask rejects the sample, or is skipped."
    )
    preflight: Annotated[bool, EXECUTION_ONLY] = Field(default=True, description="Check the key and the endpoint before the run starts.")

    def request_timeout(self) -> float:
        """Seconds one request may take once it has a slot (`timeout_s`, or the default for the endpoint)."""
        if self.timeout_s is not None:
            return self.timeout_s
        return LOCAL_TIMEOUT_S if self.base_url == "local" else REMOTE_TIMEOUT_S


class RetryConfig(Config):
    """The one retry layer (tenacity): 429, 5xx, timeouts and connection errors; Retry-After is honoured."""

    max_attempts: PositiveInt = Field(default=6, description="Attempts per request, the first included.")
    initial_s: float = Field(default=1.0, gt=0, description="First wait; grows exponentially, with jitter.")
    max_s: float = Field(default=60.0, gt=0, description="Longest single wait.")
    max_total_s: float = Field(default=900.0, gt=0, description="Give up on a request after this long.")


class LimitsConfig(Config):
    """Per-worker budgets (token buckets); null: unlimited. Set them to your account's limits / workers."""

    rpm: PositiveInt | None = Field(default=None, description="Requests per minute.")
    tpm: PositiveInt | None = Field(default=None, description="Tokens per minute (estimated prompt + max_tokens).")


class CacheConfig(Config):
    """Content-addressed response cache: a re-run never pays twice for the same request."""

    enabled: bool = Field(default=True, description="Keep every answer by the hash of its request; false: always ask.")
    dir: str | None = Field(
        default=None, description="Local folder, gs:// or s3://; null: $FACECORPUS_LLM_CACHE or ~/.cache/facecorpus/llm."
    )


class PriceConfig(Config):
    """USD per million tokens."""

    input: float = Field(ge=0, description="Prompt tokens.")
    cached_input: float | None = Field(default=None, ge=0, description="null: same as input.")
    output: float = Field(ge=0, description="Completion tokens.")


def _default_prices() -> dict[str, PriceConfig]:
    # OpenAI list prices (USD / 1M tokens) at the time of writing; override in the recipe when they change.
    gpt4o = PriceConfig(input=2.50, cached_input=1.25, output=10.00)
    return {
        "gpt-4o-2024-11-20": gpt4o,
        "gpt-4o-2024-08-06": gpt4o,
        "gpt-4o": gpt4o,
        "gpt-4o-mini": PriceConfig(input=0.15, cached_input=0.075, output=0.60),
        "smollm2": PriceConfig(input=0.0, output=0.0),
    }


class BatchConfig(Config):
    """OpenAI Batch API mode: JSONL request files, 24 h window, half price."""

    files: PositiveInt = Field(default=1, description="Request groups submitted in parallel (each split by the limits).")
    max_requests_per_file: int = Field(default=50_000, ge=1, le=50_000, description="Requests per JSONL file (the API's limit).")
    max_bytes_per_file: int = Field(
        default=190_000_000, ge=1_000, le=200_000_000, description="Bytes per JSONL file (the API allows 200 MB)."
    )
    poll_initial_s: Annotated[float, EXECUTION_ONLY] = Field(default=15.0, gt=0, description="First wait between status polls.")
    poll_max_s: Annotated[float, EXECUTION_ONLY] = Field(default=600.0, gt=0, description="Longest wait between status polls.")
    max_wait_h: Annotated[float, EXECUTION_ONLY] = Field(default=26.0, gt=0, description="Stop waiting for a batch after this long.")
    state_dir: Annotated[str | None, EXECUTION_ONLY] = Field(default=None, description="Where batch ids are kept; null: <out>/llm_batches.")


#: what the `labels` generator writes (generation/label_qa.py); validation/label_answers.py checks them
LABEL_CATEGORIES: tuple[str, ...] = ("attribute_open", "attribute_yes_no", "attribute_mcq", "attribute_list", "face_count")


class LabelQAConfig(Config):
    """The `labels` generator: dataset labels as questions and answers, no LLM (docs/generation.md)."""

    yes_no: int = Field(default=4, ge=0, le=40, description="Yes/no questions per sample (as many yes as no when the labels allow).")
    list_size: int = Field(default=4, ge=2, le=10, description="Features a list question names.")
    set_size: int = Field(default=2, ge=1, le=5, description="Features per option of a feature-set multiple-choice question.")
    subjective: bool = Field(default=False, description="Also ask about subjective flags (CelebA's Attractive).")
    only: list[str] = Field(default_factory=list, description="Ask only about these attributes; empty: every labelled one.")
    from_models: bool = Field(
        default=False, description="Also ask about model-made attributes (the LLM's annotations, face-model estimates), "
        "not only dataset labels; answers then derive from those values.")
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="with from_models: model values below are not asked about.")


class AnnotationConfig(Config):
    """Attribute re-annotation by the LLM (Face-MLLM on LAION-Face), before generation, on the endpoint
    of `generation.openai` (docs/labelled.md#attribute-re-annotation-by-the-llm)."""

    enabled: bool = Field(default=False, description="Ask the LLM for the fixed attribute vocabulary of every sample.")
    prompt_set: str = Field(default="attributes", description="A prompt set of mode annotate.")
    min_confidence: float = Field(default=0.0, ge=0, le=1, description="Values the model is less sure of are not kept.")
    max_tokens: PositiveInt = Field(default=2000, description="Completion budget of the annotation (45 values with confidences).")
class RewriteConfig(Config):
    """Prompt sets of mode `rewrite`: the LLM only rephrases the templates generator's texts (docs/trust.md §1c)."""

    on_unfaithful: Literal["template", "reject"] = Field(
        default="template",
        description="A rewrite that loses, changes or adds a fact, fails or is junk: keep the template text "
        "(flag `template_fallback:<category>`) or reject the sample `rewrite_unfaithful`.",
    )


#: what `generation.paraphrase` may reword (lists are not: their items are read back from the text)
PARAPHRASED_CATEGORIES: tuple[str, ...] = ("attribute_open", "attribute_yes_no", "attribute_mcq")


class ParaphraseConfig(Config):
    """The LLM's rewording of the labels generator's questions, the question only, each checked to keep
    its options and meaning (docs/labelled.md#the-llm-paraphrase-of-questions)."""

    enabled: bool = Field(default=False, description="Have the LLM of generation.openai reword the questions.")
    prompt_set: str = Field(default="paraphrase", description="A prompt set of mode paraphrase.")
    categories: list[str] = Field(default_factory=lambda: list(PARAPHRASED_CATEGORIES),
                                  description="Which label categories to reword (attribute_open, attribute_yes_no, attribute_mcq).")
    max_tokens: PositiveInt = Field(default=1000, description="Completion budget of one sample's rewordings.")

    @field_validator("categories")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in PARAPHRASED_CATEGORIES]
        if bad:
            raise ValueError(f"only {', '.join(PARAPHRASED_CATEGORIES)} can be reworded (lists and counts are read back "
                             f"from their text); not {', '.join(bad)}")
        return v


#: what the LLM judge scores, each from 1 (fails clearly) to 5 (fully meets it); generation/judge.py
JUDGE_CRITERIA: tuple[str, ...] = ("on_topic", "consistent", "no_identity", "no_invented_certainty")


class JudgeConfig(Config):
    """The optional LLM judge after validation (docs/generation.md#the-llm-judge): each written-to-be
    sample's caption and answers scored on a rubric under a strict schema, with a reason per score."""

    enabled: bool = Field(default=False, description="Score every sample that passed the record checks with an LLM.")
    prompt_set: str = Field(default="judge", description="A prompt set of mode judge.")
    min_score: int = Field(default=3, ge=1, le=5, description="A sample with any criterion scored below this is low.")
    on_low: Literal["reject", "flag"] = Field(
        default="reject", description="A low sample: reject it (reason judge_low_score), or keep it flagged judge_low:<criterion>.")
    on_error: Literal["reject", "flag"] = Field(
        default="reject", description="A sample the judge could not score (endpoint error, unparsable verdict): reject it "
        "(judge_failed, retryable) or keep it flagged judge_failed:<reason>.")
    max_tokens: PositiveInt = Field(default=500, description="Completion budget of one verdict (four scores with reasons).")
    reason_max_chars: int = Field(default=200, ge=20, le=1000, description="Longest reason the schema allows per criterion.")
    openai: OpenAIConfig | None = Field(
        default=None, description="The judge's own endpoint (e.g. a stronger model); null: generation.openai's.")


class GenerationConfig(Config):
    """Caption and QA generation: the generator, the categories, the prompt set and the LLM (docs/generation.md)."""

    generator: Literal["templates", "openai", "labels"] = Field(
        default="templates",
        description="`templates`: no LLM (phrases from labels and measurements); `openai`: an OpenAI-compatible "
        "endpoint; `labels`: dataset labels as QA, no LLM.",
    )
    categories: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORIES), min_length=1,
        description="QA categories, snake_case, no repeats; default: FairFaceGPT's eight.",
    )
    seed: int = Field(default=0, description="Seeds the templates generator's choice of phrasings.")
    prompt_set: str = Field(default="fairfacegpt", description="A set in prompts/manifest.yaml (fairfacegpt, structured).")
    prompts_dir: str | None = Field(default=None, description="Your own prompt folder (with manifest.yaml).")
    topics: dict[str, str] = Field(default_factory=dict, description="Topic phrases for extra categories.")
    bounds: dict[str, PositiveInt] = Field(
        default_factory=dict, description="Override the prompt set's length bounds, e.g. answer_max_chars (small models)."
    )
    mode: Literal["online", "batch"] = Field(default="online", description="batch: the OpenAI Batch API.")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="The endpoint, model and request settings.")
    retries: Annotated[RetryConfig, EXECUTION_ONLY] = Field(default_factory=RetryConfig, description="Retries of one request.")
    limits: Annotated[LimitsConfig, EXECUTION_ONLY] = Field(default_factory=LimitsConfig, description="Per-worker budgets.")
    cache: Annotated[CacheConfig, EXECUTION_ONLY] = Field(default_factory=CacheConfig, description="The response cache.")
    prices: dict[str, PriceConfig] = Field(default_factory=_default_prices, description="Per model; merged over defaults.")
    batch_discount: float = Field(default=0.5, ge=0, le=1, description="Fraction off the price in batch mode.")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batch API settings (`mode: batch`).")
    labels: LabelQAConfig = Field(default_factory=LabelQAConfig)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    paraphrase: ParaphraseConfig = Field(default_factory=ParaphraseConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)

    @model_validator(mode="after")
    def _label_categories(self) -> GenerationConfig:
        if self.paraphrase.enabled and self.generator != "labels":
            raise ValueError("paraphrase rewords the labels generator's questions: it needs generator: labels")
        if self.generator == "labels":
            if "categories" not in self.model_fields_set:
                self.categories = list(LABEL_CATEGORIES)
            unknown = [c for c in self.categories if c not in LABEL_CATEGORIES]
            if unknown:
                raise ValueError(f"the labels generator writes {', '.join(LABEL_CATEGORIES)}; not {', '.join(unknown)}")
        return self
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)

    @field_validator("prices", mode="before")
    @classmethod
    def _merge_prices(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {**_default_prices(), **v}
        return v

    @field_validator("categories")
    @classmethod
    def _unique_snake(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not re.match(r"^[a-z][a-z0-9_]*$", c)]
        if bad:
            raise ValueError(f"category names must be snake_case: {bad}")
        if len(set(v)) != len(v):
            raise ValueError("categories must not repeat")
        return v
