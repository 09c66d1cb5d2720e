"""The recipe's `runner` section. All of it is execution-only: the same recipe on the local runner or
on Dataflow writes the same records (and the failure threshold only decides the exit code). What the
effective runner allows is decided in execution.py."""

from __future__ import annotations

from pydantic import Field

from .config import Config


class RunnerConfig(Config):
    """Which Beam runner executes the graph, and its options."""

    runner: str = Field(
        default="FnApiRunner",
        description="Beam runner: FnApiRunner locally, DataflowRunner in GCP (not DirectRunner: offline it tries "
        "to download Prism).",
    )
    options: list[str] = Field(
        default_factory=list,
        description="Extra Beam pipeline options, e.g. `--project=…`; options after `--` on the command line are appended.",
    )
    max_retryable_rejects: float = Field(
        default=0.1, ge=0, le=1,
        description="Share of the inputs that may end as infrastructure rejects (retryable LLM, read, download and "
        "model errors, and every LLM endpoint failure) before the run exits 1 naming the --resume --retry-rejects "
        "command (outcome.py); for a rewrite prompt set also the share of its LLM rewrite requests the endpoint may "
        "fail (the samples keep their template texts) before the run exits 1.",
    )
