"""The recipe's `image` section: what the image check (image_check.py) accepts and how the stored
image is encoded. Kept apart from image_check.py so loading a recipe does not import Beam or PIL."""

from __future__ import annotations

from pydantic import Field

from .config import Config, PositiveInt


class ImageConfig(Config):
    """Decoding limits and the stored image (image_check.py)."""

    min_side: PositiveInt = Field(
        default=32, description="Reject `too_small` when the shorter side (after EXIF orientation) is below this."
    )
    max_pixels: PositiveInt = Field(
        default=60_000_000, description="Reject `too_many_pixels` above this, read from the header before decoding (bombs)."
    )
    max_input_bytes: PositiveInt = Field(default=50_000_000, description="Reject larger input files `too_large`.")
    max_side: PositiveInt | None = Field(
        default=1024, description="Downscale the stored image so its longer side is at most this; null: keep."
    )
    jpeg_quality: int = Field(default=92, ge=50, le=100, description="Quality of the stored `KEY.jpg`.")
