"""Showing a sample's image in a terminal: face boxes drawn on it, then half-blocks or a graphics protocol.

Half-blocks work in every colour terminal: each character cell is '▀' with the upper pixel as the
foreground colour and the lower pixel as the background, so a cell shows two pixels. Terminals that
speak a graphics protocol (kitty's, or iTerm2's inline images, also spoken by WezTerm) can show the
real pixels; `graphics_protocol` tells which one the environment announces.
"""

from __future__ import annotations

import base64
import io
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style

from ..records import Sample

PRIMARY_COLOUR = (255, 40, 40)
OTHER_COLOUR = (255, 210, 0)
LANDMARK_COLOUR = (0, 230, 255)


def annotated_image(jpeg: bytes, sample: Sample | None) -> Image.Image:
    """The sample image (RGB) with every face box drawn: the primary face red, others yellow."""
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if sample is None or not sample.faces:
        return img
    draw = ImageDraw.Draw(img)
    # thick enough to survive the downscale to a few dozen terminal cells
    width = max(2, round(max(img.size) / 120))
    for i, face in enumerate(sample.faces):
        colour = PRIMARY_COLOUR if i == sample.primary_face else OTHER_COLOUR
        b = face.box
        draw.rectangle([b.x1, b.y1, b.x2, b.y2], outline=colour, width=width)
        for x, y in face.landmarks5 or []:
            r = width
            draw.ellipse([x - r, y - r, x + r, y + r], fill=LANDMARK_COLOUR)
    return img


class HalfBlockImage:
    """A Rich renderable drawing an image with '▀' cells, fitted into the space it is given."""

    def __init__(self, image: Image.Image, max_height: int | None = None) -> None:
        self.image = image
        self.max_height = max_height

    def cell_size(self, max_width: int, max_height: int | None) -> tuple[int, int]:
        """(columns, rows) that fit the image into max_width × max_height cells, keeping its aspect.

        A cell is about twice as tall as wide and shows two pixels stacked, so one cell ≈ one square
        pixel pair: rows = columns × (h / w) / 2.
        """
        w, h = self.image.size
        cols = max(1, max_width)
        rows = max(1, round(cols * h / w / 2))
        if max_height is not None and rows > max_height:
            rows = max(1, max_height)
            cols = max(1, min(max_width, round(rows * 2 * w / h)))
        return cols, rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        limit = self.max_height if self.max_height is not None else options.height
        cols, rows = self.cell_size(options.max_width, limit)
        small = self.image.resize((cols, rows * 2), Image.Resampling.BOX)
        px = small.load()
        for y in range(rows):
            for x in range(cols):
                top, bottom = px[x, 2 * y], px[x, 2 * y + 1]
                yield Segment("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                         bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"))
            yield Segment.line()


def graphics_protocol(env: Mapping[str, str] | None = None) -> str | None:
    """'kitty', 'iterm' or None: the image protocol the terminal announces through its environment."""
    env = os.environ if env is None else env
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if "kitty" in term or env.get("KITTY_WINDOW_ID") or program in ("ghostty",) or "ghostty" in term:
        return "kitty"
    if program in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    return None


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def kitty_escape(image: Image.Image, chunk: int = 4096) -> str:
    """kitty graphics protocol: transmit and display a PNG, base64 in chunks of at most 4096 bytes."""
    data = base64.standard_b64encode(_png(image)).decode("ascii")
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [""]
    out = []
    for i, part in enumerate(parts):
        more = 1 if i < len(parts) - 1 else 0
        head = f"a=T,f=100,m={more}" if i == 0 else f"m={more}"
        out.append(f"\x1b_G{head};{part}\x1b\\")
    return "".join(out)


def iterm_escape(image: Image.Image) -> str:
    """iTerm2 inline image (OSC 1337 File=…), also understood by WezTerm."""
    png = _png(image)
    data = base64.standard_b64encode(png).decode("ascii")
    return f"\x1b]1337;File=inline=1;size={len(png)};preserveAspectRatio=1:{data}\x07"


def graphics_escape(image: Image.Image, protocol: str) -> str:
    return kitty_escape(image) if protocol == "kitty" else iterm_escape(image)


def viewer_command(path: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """The command that opens an image in the system viewer: $FACECORPUS_VIEWER (with {path} or the path
    appended), else `open` on macOS, `xdg-open` elsewhere."""
    env = os.environ if env is None else env
    custom = env.get("FACECORPUS_VIEWER")
    if custom:
        parts = shlex.split(custom)
        return [p.replace("{path}", str(path)) for p in parts] if "{path}" in custom else [*parts, str(path)]
    return ["open", str(path)] if sys.platform == "darwin" else ["xdg-open", str(path)]


def open_in_viewer(image: Image.Image, key: str) -> str:
    """Write the annotated image to a temporary PNG and start the viewer on it (without waiting).

    Returns the file path; raises OSError when the viewer cannot be started.
    """
    folder = Path(tempfile.gettempdir()) / "facecorpus-review"
    folder.mkdir(exist_ok=True)
    path = folder / f"{key}.png"
    image.save(path, "PNG")
    subprocess.Popen(viewer_command(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return str(path)
