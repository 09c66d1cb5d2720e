"""facecorpus.loader vs a bare `webdataset.WebDataset(urls).decode("pil")` over the same shards: samples/s.

Both read the same local shards (the demo output's, listed REPEAT times so each pass streams a few
hundred samples), without shuffling, and decode the same members: KEY.jpg to an RGB image and KEY.json
parsed (KEY.txt left as bytes); ours also builds the ShareGPT conversation. Passes alternate (bare,
ours, bare, ours, ...) so both see the same machine load, after one untimed pass of each over the
shards listed once (imports done and the files in the page cache for both sides alike, so neither pays
the other's cold start). Figures: the first timed pass of each (whole run: a full pass, dataset set-up
included) and the median of the others (steady state; a best-of favours whichever side got a quiet moment), as samples/s (wall) and as CPU per sample (process
time, which the machine's load moves less). Ratio = ours / bare rate, bare / ours CPU (aim ≥ 0.9).

Run: .venv/bin/python benchmarks/loader.py [OUTPUT_DIR] [--repeat R] [--passes P]
(without OUTPUT_DIR the demo is built into a temporary folder first)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def build_demo(dest: Path) -> Path:
    import yaml

    from facecorpus.demo import build_demo_inputs
    from facecorpus.pipeline import run_recipe
    from facecorpus.recipe import validate_recipe
    from facecorpus.resources import data_dir

    inputs = build_demo_inputs(dest / "inputs")
    text = (data_dir("pipelines") / "demo.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    raw["generation"]["generator"] = "templates"  # the shards' layout is the same; no LLM needed to build them
    recipe = validate_recipe(raw, "demo.yaml", inputs)
    run_recipe(recipe, str(dest / "out"), [], recipe_yaml=text)
    return dest / "out"


def bare_pass(urls: list[str]) -> int:
    """Plain webdataset: read the shards, decode the same two members ours decodes (KEY.jpg to RGB,
    KEY.json parsed); the caption (KEY.txt) is left undecoded by both."""
    import webdataset as wds
    from PIL import Image

    def rgb(data: bytes) -> Image.Image:  # as facecorpus.loader.decode_record does it
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB") if img.mode != "RGB" else img

    n = 0
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).to_tuple("jpg", "json").map_tuple(rgb, json.loads)
    for image, record in dataset:
        assert image.size and record  # decoded image, parsed record
        n += 1
    return n


def ours_pass(urls: list[str]) -> int:
    from facecorpus.loader import make_dataset

    n = 0
    for image, conversation in make_dataset(urls, format="sharegpt", shuffle=0, shard_shuffle=0):
        assert image.size and conversation
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", nargs="?")
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output) if args.output else build_demo(Path(tmp))
        shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
        urls = shards * args.repeat
        rates: dict[str, list[float]] = {"bare": [], "ours": []}
        cpu: dict[str, list[float]] = {"bare": [], "ours": []}  # ms per sample: less moved by the load than wall time
        counts = {}
        load = [os.getloadavg()[0]]
        for fn in (bare_pass, ours_pass):  # untimed: imports and the page cache warm for both sides alike
            fn(shards)
        for _ in range(args.passes):
            for name, fn in (("bare", bare_pass), ("ours", ours_pass)):
                t, c = time.perf_counter(), time.process_time()
                counts[name] = fn(urls)
                rates[name].append(counts[name] / (time.perf_counter() - t))
                cpu[name].append((time.process_time() - c) / counts[name] * 1000)
        load.append(os.getloadavg()[0])
        assert counts["bare"] == counts["ours"], counts
        first = {k: v[0] for k, v in rates.items()}
        best = {k: statistics.median(v[1:] or v) for k, v in rates.items()}
        print(f"samples per pass: {counts['ours']}; load average {load[0]:.1f} → {load[1]:.1f}")
        for name in rates:
            print(f"{name:5s}: whole run (first pass) {first[name]:7.1f} samples/s, steady (median of later passes) {best[name]:7.1f}")
        print(f"loader / bare webdataset: whole run {first['ours'] / first['bare']:.3f}, steady {best['ours'] / best['bare']:.3f}")
        c_first = {k: v[0] for k, v in cpu.items()}
        c_best = {k: statistics.median(v[1:] or v) for k, v in cpu.items()}
        print(f"CPU per sample: bare {c_first['bare']:.3f} / {c_best['bare']:.3f} ms, ours {c_first['ours']:.3f} / {c_best['ours']:.3f} ms "
              f"(whole / steady) → bare / ours {c_first['bare'] / c_first['ours']:.3f}, {c_best['bare'] / c_best['ours']:.3f}")


if __name__ == "__main__":
    main()
