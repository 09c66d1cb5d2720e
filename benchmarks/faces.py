"""The face stage inside a Beam pipeline (RunInference + BatchElements + selection, FnApiRunner) vs a plain
Python loop calling the same backend on the same decoded images, in one process → the throughput ratio.

Both sides read and decode the same JPEG files and load the models; the Beam side also builds and starts the pipeline.
Runs are interleaved, best of `--repeat`, because the machine may be shared.

    .venv/bin/python benchmarks/faces.py [--images N] [--backend portable|insightface] [--pack NAME]
                                         [--providers auto|cpu|cuda] [--batch-size B] [--compare loop|batching]

`--compare batching` runs the Beam stage with `--batch-size` against batch size 1 instead (the GPU
question: does batching pay?). Packs come from the model store ($FACECORPUS_MODELS or --store).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from _photos import augmented_jpegs  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from facecorpus.faces.analyzer import load_analyzer  # noqa: E402
from facecorpus.faces.config import FacesConfig  # noqa: E402
from facecorpus.faces.selection import select_faces  # noqa: E402
from facecorpus.faces.stage import FaceStage  # noqa: E402
from facecorpus.image_check import decode_image  # noqa: E402
from facecorpus.image_config import ImageConfig  # noqa: E402
from facecorpus.records import SourceInfo  # noqa: E402
from facecorpus.rejection import Rejected
from facecorpus.stage import REJECTS, WorkItem  # noqa: E402


def decoded_item(name: str, data: bytes) -> WorkItem:
    """What the image stage hands the face stage: the decoded RGB pixels and the image facts."""
    d = decode_image(data, ImageConfig())
    return WorkItem(key=name.split(".")[0], source=SourceInfo(dataset="bench", id=name), image=d.info, jpeg=data,
                    pixels=np.asarray(d.rgb))


def read_item(path: str) -> WorkItem:
    p = Path(path)
    return decoded_item(p.name, p.read_bytes())


def plain_loop(paths: list[str], cfg: FacesConfig) -> int:
    """Load the analyzer, then read, decode, analyse and select image by image. Returns faces kept."""
    analyzer = load_analyzer(cfg)
    kept = 0
    for path in paths:
        item = read_item(path)
        faces = analyzer.analyze(item.pixels)
        try:
            kept += len(select_faces(faces, cfg, item.image.width, item.image.height).faces)
        except Rejected:
            pass
    return kept


class _Count(beam.DoFn):
    def process(self, item: WorkItem):  # noqa: ANN201
        yield len(item.faces)


def beam_stage(paths: list[str], cfg: FacesConfig) -> None:
    """Read and decode, then the face stage as the pipeline applies it, on FnApiRunner.

    Only file paths go into the pipeline, as with a real source: Create pickles (and bz2-compresses) its
    values into the graph, and pixels, in a run, only exist inside the fused image → faces steps."""
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    items = p | beam.Create(paths, reshuffle=False) | "Decode" >> beam.Map(read_item)
    result = items | FaceStage(cfg, jpeg_quality=90)
    _ = result["main"] | "Count" >> beam.ParDo(_Count()) | beam.combiners.Count.Globally()
    _ = result[REJECTS] | "CountRejects" >> beam.combiners.Count.Globally()
    p.run().wait_until_finish()


def best_of(repeat: int, runs: dict) -> dict[str, float]:
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--backend", default="portable", choices=["portable", "insightface"])
    ap.add_argument("--pack", default=None)
    ap.add_argument("--store", default=None)
    ap.add_argument("--providers", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--det-size", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--compare", default="loop", choices=["loop", "batching"])
    args = ap.parse_args()
    cfg = FacesConfig(backend=args.backend, pack=args.pack, models_dir=args.store, providers=args.providers,
                      batch_size=args.batch_size, det_size=args.det_size)
    folder = Path(tempfile.mkdtemp(prefix="facecorpus-bench-"))
    items = []
    for name, data in augmented_jpegs(args.images, seed=1, side=512):
        (folder / name).write_bytes(data)
        items.append(str(folder / name))
    n = len(items)
    analyzer = load_analyzer(cfg)  # fail early on a missing pack; also names the providers in use
    used = getattr(analyzer, "providers", None) or args.providers
    del analyzer
    print(f"images: {n} (512x512 augmented real photos); backend {args.backend} ({cfg.pack_name()}), providers {used}")
    if args.compare == "loop":
        best = best_of(args.repeat, {"plain": lambda: plain_loop(items, cfg), "beam": lambda: beam_stage(items, cfg)})
        print(f"plain loop          : {n / best['plain']:7.2f} images/s ({best['plain']:.1f} s, models loaded inside)")
        print(f"Beam face stage     : {n / best['beam']:7.2f} images/s ({best['beam']:.1f} s, pipeline start inside; "
              f"batch {args.batch_size})")
        print(f"ratio ours/plain: {best['plain'] / best['beam']:.2f}")
    else:
        one = cfg.model_copy(update={"batch_size": 1})
        best = best_of(args.repeat, {"batched": lambda: beam_stage(items, cfg), "single": lambda: beam_stage(items, one)})
        print(f"Beam, batch {args.batch_size:<3}    : {n / best['batched']:7.2f} images/s")
        print(f"Beam, batch 1      : {n / best['single']:7.2f} images/s")
        print(f"ratio batched/single: {best['single'] / best['batched']:.2f}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
