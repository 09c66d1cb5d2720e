"""The recipe's `output` section: how samples are grouped into WebDataset shards and rejects files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..config import EXECUTION_ONLY, Config, PositiveInt


class CardConfig(Config):
    """The dataset card (sinks/card.py)."""

    # part of the recipe's identity (not execution-only): it changes which files the output holds
    plots: bool = Field(default=True, description="Draw the card's figures (plots/*.png; matplotlib); false: tables only.")


class OutputConfig(Config):
    """Shard sizes, the rejects files (sinks/shards.py) and the dataset card."""

    samples_per_shard: PositiveInt = Field(default=1000, description="Target samples per shard.")
    max_shard_bytes: PositiveInt = Field(default=1_000_000_000, description="A shard closes before passing this.")
    rejects_shards: int = Field(
        default=0, ge=0, description="Number of rejects/*.jsonl files per attempt; 0: one per bundle that has rejects "
        "(written in parallel by the workers, no empty files — object stores cannot take an empty multipart upload)."
    )
    grouping: Annotated[Literal["auto", "staging", "shuffle"], EXECUTION_ONLY] = Field(
        default="auto",
        description="How samples reach their shard: 'staging' spills samples to files and shuffles keys only "
        "(flat memory on local runners); 'shuffle' groups whole samples (Dataflow); 'auto' picks by runner.",
    )
    card: CardConfig = Field(default_factory=CardConfig)
