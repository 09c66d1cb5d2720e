"""facecorpus.loader vs a bare `webdataset.WebDataset(urls).decode("pil")` over the same shards: samples/s.

Both read the same local shards (the demo output's, listed REPEAT times so each pass streams a few
hundred samples), without shuffling, and fully decode every image to RGB; ours also parses the
record and builds the ShareGPT conversation. Passes alternate (bare, ours, bare, ours, ...) so both
see the same machine load; the best pass of each counts. Ratio = ours / bare (aim ≥ 0.9).

Run: .venv/bin/python benchmarks/loader.py [OUTPUT_DIR] [--repeat R] [--passes P]
(without OUTPUT_DIR the demo is built into a temporary folder first)
"""

from __future__ import annotations

import argparse
import json
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
    recipe = validate_recipe(yaml.safe_load(text), "demo.yaml", inputs)
    run_recipe(recipe, str(dest / "out"), [], recipe_yaml=text)
    return dest / "out"


def bare_pass(urls: list[str]) -> int:
    import webdataset as wds

    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"):
        assert sample["jpg"].size  # decoded PIL image
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
        best = {"bare": 0.0, "ours": 0.0}
        counts = {}
        for _ in range(args.passes):
            for name, fn in (("bare", bare_pass), ("ours", ours_pass)):
                t = time.perf_counter()
                counts[name] = fn(urls)
                best[name] = max(best[name], counts[name] / (time.perf_counter() - t))
        assert counts["bare"] == counts["ours"], counts
        print(json.dumps({"samples_per_pass": counts["ours"], "bare_samples_per_s": round(best["bare"], 1),
                          "ours_samples_per_s": round(best["ours"], 1)}))
        print(f"loader / bare webdataset: {best['ours'] / best['bare']:.3f}")


if __name__ == "__main__":
    main()
