"""The recipe's `output` section: how samples are grouped into WebDataset shards and rejects files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..config import EXECUTION_ONLY, Config, PositiveInt


class OutputConfig(Config):
    """Shard sizes and the rejects files (sinks/shards.py)."""

    samples_per_shard: PositiveInt = Field(default=1000, description="Target samples per shard.")
    max_shard_bytes: PositiveInt = Field(default=1_000_000_000, description="A shard closes before passing this.")
    rejects_shards: PositiveInt = Field(default=1, description="Number of rejects/*.jsonl files.")
    grouping: Annotated[Literal["auto", "staging", "shuffle"], EXECUTION_ONLY] = Field(
        default="auto",
        description="How samples reach their shard: 'staging' spills samples to files and shuffles keys only "
        "(flat memory on local runners); 'shuffle' groups whole samples (Dataflow); 'auto' picks by runner.",
    )
