"""Augmented copies of the bundled real photos, for benchmarks (deterministic for a seed)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

from PIL import Image, ImageEnhance, ImageOps

from facecorpus.demo import photo_paths


def augmented_jpegs(n: int, seed: int = 0, side: int = 256) -> Iterator[tuple[str, bytes]]:
    """(name, JPEG bytes) for n distinct images: random crop, flip, brightness of the face photos."""
    rng = random.Random(seed)
    paths = photo_paths()
    bases = [Image.open(paths[k]).convert("RGB") for k in ("astronaut", "group6", "hanks", "cameraman")]
    for i in range(n):
        img = bases[i % len(bases)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out = img.crop((x, y, x + cw, y + ch)).resize((side, side))
        if rng.random() < 0.5:
            out = ImageOps.mirror(out)
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.6, 1.4))
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=90)
        yield f"img{i:06d}.jpg", buf.getvalue()
