"""The `download` section of a web-link source (`laion`, `facecaption`): how images are fetched.

Defaults are the production-safe ones. Pacing and politeness are execution-only: a run resumed with
more threads or a longer timeout keeps its identity; what an image becomes (size, resize) does not.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..config import EXECUTION_ONLY, Config, PositiveInt


class DownloadConfig(Config):
    """How web images are fetched (sources `laion`, `facecaption`). Defaults are the production-safe ones."""

    threads: Annotated[PositiveInt, EXECUTION_ONLY] = Field(default=32, description="Requests in flight per worker process.")
    per_domain: Annotated[PositiveInt, EXECUTION_ONLY] = Field(
        default=4, description="Requests in flight per host for the whole job (all workers together): a host's URLs "
        "travel in this many keyed lanes, one request per lane at a time."
    )
    timeout_s: Annotated[float, EXECUTION_ONLY] = Field(default=10.0, gt=0, description="Connect and per-read timeout.")
    deadline_s: Annotated[float, EXECUTION_ONLY] = Field(
        default=60.0, gt=0, description="Whole-URL limit per attempt (redirects and body)."
    )
    retries: Annotated[int, EXECUTION_ONLY] = Field(
        default=2, ge=0, le=10, description="Extra attempts after a transient failure."
    )
    backoff_s: Annotated[float, EXECUTION_ONLY] = Field(
        default=1.0, ge=0, description="First back-off; doubles per retry, with jitter."
    )
    max_backoff_s: Annotated[float, EXECUTION_ONLY] = Field(
        default=60.0, ge=0, description="Longest wait, including a server's Retry-After."
    )
    max_redirects: int = Field(default=5, ge=0, le=20, description="More redirects are rejected `too_many_redirects`.")
    max_bytes: PositiveInt = Field(default=25_000_000, description="Larger bodies are rejected `too_large`.")
    user_agent: str | None = Field(default=None, description="Default: 'facecorpus/<version> (…; +contact)'.")
    contact: str | None = Field(default=None, description="URL or e-mail added to the User-Agent for site owners.")
    user_agent_token: str = Field(default="facecorpus", description="Token X-Robots-Tag lines may address.")
    optout_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that opt an image out (`robots_optout`).",
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks (CIDR) that may be contacted anyway. Empty in production: loopback, "
        "private, link-local, multicast and reserved addresses are refused. Tests set ['127.0.0.1/32'].",
    )
    verify_tls: bool = Field(default=True, description="Check certificates; false only for test servers.")
    batch_size: Annotated[PositiveInt, EXECUTION_ONLY] = Field(
        default=256, description="Most rows one download step instance holds at once, waiting or in flight (at least `threads`)."
    )
    robots_txt: bool = Field(
        default=True, description="Read each origin's robots.txt and obey it for user_agent_token (RFC 9309; "
        "`robots_disallowed`, `robots_unreachable`); its Crawl-delay spaces the host's requests."
    )
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = Field(
        default="keep_ratio_largest", description="Resize mode applied on download (img2dataset's modes)."
    )
    image_size: PositiveInt = Field(default=1024, description="Target side for resize_mode (img2dataset's image_size).")
    resize_only_if_bigger: bool = Field(default=True, description="Never upscale (img2dataset's resize_only_if_bigger).")

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network in CIDR form: {n!r}") from None
        return v
