"""The portable face path: BlazeFace + O-Net (the default) vs the MTCNN cascade vs a plain PIL decode of the
same JPEGs, in one process, on one core → CPU ms per image and the ratios, plus recall and box agreement
on the demo's photos.

    .venv/bin/python benchmarks/faces.py [--rounds R] [--crops N] [--photos M] [--cores K] [--store DIR]
                                         [--beam N] [--profile]

Sets (deterministic, from the bundled real photos):
- **crops**: FairFace-style 224 px crops (box side × 1.5) of the six people of the group photo and of
  two single-face photos, flipped and re-lit into N images; BlazeFace runs them with and without the
  size prior 'crop' that FairFace items carry;
- **photos**: the six-person group photo at 1024 px, flipped and re-lit into M images.

Each side analyses the whole set as the face stage does (batches of 8; FaceMesh pose/openness and the
expression model included; selection not). Figures per side: **whole run** (model load + first pass, per
image) and **steady state** (median per image over R further passes), both as process CPU time;
wall time is printed too. Sides are interleaved within each round, so both see the same machine load;
the load average (1 min) is printed before and after. `--cores 1` (default) pins the process to one
core, as the targets are stated per core. `--beam N` adds the face stage inside Beam (RunInference on
FnApiRunner) against a plain loop over the same backend on N images, whole run (pipeline start
included) and steady state (the difference between N and 2N images), as process CPU (FnApiRunner runs
in this process) and wall time.

`--profile` adds where the CPU goes on each set with the crop prior as a run gives it (thread CPU per
stage over R passes: decode, BlazeFace with its letterbox and blending, O-Net with its patches, FaceMesh,
expression, quality, and the rest: the Python and numpy between them).

Recall: faces with score >= 0.9 and a shorter side >= 40 px (the recipe defaults) on the demo's inputs
(its photo folder and FairFace zip, decoded as the image stage decodes them; FairFace members with the
'crop' prior as in a run), against the number of faces each photo shows; agreement: IoU of each face's
box with MTCNN's, worst of its 5 landmarks (share of the box width), yaw and roll differences.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

from facecorpus.demo import GROUP_FACES, _fairface_crop, build_demo_inputs, photo_paths  # noqa: E402
from facecorpus.errors import MissingModelPack  # noqa: E402
from facecorpus.faces.analyzer import FaceAnalyzer, load_analyzer, resolve_pack  # noqa: E402
from facecorpus.faces.config import FacesConfig  # noqa: E402
from facecorpus.faces.nms import overlaps  # noqa: E402
from facecorpus.image_check import decode_image  # noqa: E402
from facecorpus.image_config import ImageConfig  # noqa: E402
from facecorpus.records import Face  # noqa: E402
from facecorpus.rejection import Rejected  # noqa: E402

BATCH = 8
MIN_SCORE, MIN_SIZE = 0.9, 40
#: faces each demo input shows (decodable inputs only; the demo's broken files never reach the faces)
DEMO_FACES = {
    "group/t1.jpg": 6, "group/t1_mirror.jpg": 6, "cameraman_gray.png": 1, "cameraman_16bit.png": 1,
    "astronaut_cmyk.jpg": 1, "astronaut_palette.png": 1, "astronaut_alpha.png": 1, "astronaut_exif_rotated.jpg": 1,
    "rocket.jpg": 0, "val/1.jpg": 1, "val/2.jpg": 1, "val/3.jpg": 1, "val/4.jpg": 1, "val/5.jpg": 0, "val/6.jpg": 0,
    "val/7.jpg": 0, "val/20.jpg": 1, "val/21.jpg": 1, "val/22.jpg": 1, "val/23.jpg": 1, "val/24.jpg": 1, "val/25.jpg": 1,
}


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _variants(bases: list[Image.Image], n: int) -> list[bytes]:
    out = []
    for i in range(n):
        img = bases[i % len(bases)]
        if (i // len(bases)) % 2:
            img = ImageOps.mirror(img)
        img = ImageEnhance.Brightness(img).enhance(0.7 + 0.6 * ((i * 7) % 10) / 9)
        out.append(_jpeg(img))
    return out


def crop_set(n: int) -> list[bytes]:
    photos = photo_paths()
    bases = [_fairface_crop(photos["group6"], box) for box in GROUP_FACES]
    bases.append(Image.open(photos["hanks"]).convert("RGB").resize((224, 224), Image.Resampling.LANCZOS))
    astro = Image.open(photos["astronaut"]).convert("RGB")
    bases.append(astro.crop((140, 20, 340, 220)).resize((224, 224), Image.Resampling.LANCZOS))
    return _variants(bases, n)


def photo_set(n: int) -> list[bytes]:
    group = Image.open(photo_paths()["group6"]).convert("RGB")
    return _variants([group.resize((1024, round(group.height * 1024 / group.width)), Image.Resampling.LANCZOS)], n)


def decode(data: bytes) -> np.ndarray:
    """The plain decode every side starts from: PIL, RGB, as an array."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def analyse_all(analyzer: FaceAnalyzer, images: list[bytes], prior: str | None) -> int:
    """Decode and analyse in batches as the face stage does; returns faces found."""
    found = 0
    for start in range(0, len(images), BATCH):
        pixels = [decode(d) for d in images[start : start + BATCH]]
        for r in analyzer.analyze_batch(pixels, priors=[prior] * len(pixels)):
            found += len(r) if isinstance(r, list) else 0
    return found


def cpu_wall(fn: Callable[[], object]) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def cost(store: str, sets: dict[str, list[bytes]], rounds: int) -> None:
    configs = {
        "mtcnn": FacesConfig(backend="portable", models_dir=store, providers="cpu", detector="mtcnn"),
        "blazeface": FacesConfig(backend="portable", models_dir=store, providers="cpu"),
    }
    sides: dict[str, tuple[str, str | None, str]] = {  # name → (config, prior, set)
        "decode/crops": ("", None, "crops"), "mtcnn/crops": ("mtcnn", None, "crops"),
        "blazeface/crops": ("blazeface", None, "crops"), "blazeface+prior/crops": ("blazeface", "crop", "crops"),
        "decode/photos": ("", None, "photos"), "mtcnn/photos": ("mtcnn", None, "photos"),
        "blazeface/photos": ("blazeface", None, "photos"),
    }
    analyzers: dict[str, FaceAnalyzer] = {}
    whole: dict[str, float] = {}
    steady: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    print(f"load average before: {load()}")
    for name, (conf, prior, which) in sides.items():  # whole run: model load + the first pass
        data = sets[which]
        if not conf:
            c, _ = cpu_wall(lambda data=data: [decode(d) for d in data])
        else:
            def first(conf: str = conf, prior: str | None = prior, data: list[bytes] = data) -> None:
                if conf not in analyzers:
                    analyzers[conf] = load_analyzer(configs[conf])
                analyse_all(analyzers[conf], data, prior)
            c, _ = cpu_wall(first)
        whole[name] = c / len(data)
    for _ in range(rounds):
        for name, (conf, prior, which) in sides.items():
            data = sets[which]
            fn = (lambda data=data: [decode(d) for d in data]) if not conf else \
                (lambda a=analyzers[conf], data=data, prior=prior: analyse_all(a, data, prior))
            c, w = cpu_wall(fn)
            steady[name].append((c / len(data), w / len(data)))
    print(f"load average after:  {load()}")
    med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in steady.items()}
    print(f"\n{'side':24s} {'whole run':>12s} {'steady CPU':>12s} {'steady wall':>12s}   per image")
    for name in sides:
        print(f"{name:24s} {whole[name] * 1000:9.2f} ms {med[name][0] * 1000:9.2f} ms {med[name][1] * 1000:9.2f} ms")
    print()
    for which, best in (("crops", "blazeface+prior/crops"), ("crops", "blazeface/crops"), ("photos", "blazeface/photos")):
        ours, mt, dec = med[best][0], med[f"mtcnn/{which}"][0], med[f"decode/{which}"][0]
        print(f"{best:24s} steady CPU {ours * 1000:.2f} ms: {mt / ours:.1f}x faster than MTCNN ({mt * 1000:.1f} ms), "
              f"{ours / dec:.1f}x its decode ({dec * 1000:.2f} ms); whole run {whole[best] * 1000:.1f} ms vs MTCNN "
              f"{whole[f'mtcnn/{which}'] * 1000:.1f} ms")


def profile(store: str, sets: dict[str, list[bytes]], rounds: int) -> None:
    """Thread CPU per stage of the default path (BlazeFace + O-Net), each set analysed as `cost` does."""
    from facecorpus.faces import blazeface, mtcnn, portable

    analyzer = load_analyzer(FacesConfig(backend="portable", models_dir=store, providers="cpu"))
    spent: dict[str, int] = {}
    patched: list[tuple[object, str, object]] = []
    order: list[str] = []

    def timed(owner: object, attr: str, stage: str) -> None:
        inner = getattr(owner, attr)

        def wrapper(*args: object, **kwargs: object) -> object:
            t = time.thread_time_ns()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0) + time.thread_time_ns() - t

        patched.append((owner, attr, inner))
        if stage not in order:
            order.append(stage)
        setattr(owner, attr, wrapper)

    finder, mesh, expr = analyzer.finder, analyzer.mesh, analyzer.expression  # type: ignore[attr-defined]
    timed(sys.modules[__name__], "decode", "decode")
    timed(finder, "propose", "BlazeFace")
    timed(blazeface, "letterbox", "BlazeFace/letterbox (resize, to float)")
    for model in finder.models.values():
        timed(model.interpreter, "invoke", "BlazeFace/model")
    timed(blazeface, "weighted_nms", "BlazeFace/blending")
    timed(finder.onet, "refine", "O-Net")
    timed(mtcnn, "crop_patches", "O-Net/patches (cut, resize)")
    timed(finder.onet.session, "run", "O-Net/model")
    timed(mesh, "run", "FaceMesh")
    timed(mesh.interpreter, "invoke", "FaceMesh/model")
    timed(expr, "classify", "expression")
    timed(expr.interpreter, "invoke", "expression/model")
    timed(portable, "face_quality", "quality")
    try:
        for which, data in sets.items():
            prior = "crop" if which == "crops" else None
            analyse_all(analyzer, data, prior)  # warm
            spent.clear()
            t = time.thread_time_ns()
            for _ in range(rounds):
                analyse_all(analyzer, data, prior)
            total = time.thread_time_ns() - t
            n = rounds * len(data)
            top = sum(v for k, v in spent.items() if "/" not in k)
            print(f"\nprofile, {which} (prior {prior}): {total / n / 1e6:.2f} ms thread CPU per image over {n} "
                  f"(load {load()})")
            for stage in [*order, "rest (Python, numpy, records)"]:
                v = spent.get(stage, total - top)
                name = f"  of which {stage.split('/')[1]}" if "/" in stage else stage
                print(f"  {name:40s} {v / n / 1e6:7.3f} ms  {100 * v / total:5.1f}%")
    finally:
        for owner, attr, inner in reversed(patched):
            setattr(owner, attr, inner)


def demo_inputs(folder: Path) -> list[tuple[str, np.ndarray, str | None]]:
    """(name, pixels as the image stage decodes them, size prior as the source gives it) per decodable input."""
    build_demo_inputs(folder)
    out = []
    for path in sorted((folder / "photos").rglob("*")):
        name = path.relative_to(folder / "photos").as_posix()
        if name in DEMO_FACES:
            out.append((name, np.asarray(decode_image(path.read_bytes(), ImageConfig()).rgb), None))
    with zipfile.ZipFile(folder / "fairface" / "fairface-img-margin025-trainval.zip") as zf:
        for name in sorted(zf.namelist()):
            if name in DEMO_FACES:
                out.append((name, np.asarray(decode_image(zf.read(name), ImageConfig()).rgb), "crop"))
    return out


def _kept(faces: list[Face]) -> list[Face]:
    return [f for f in faces if f.score >= MIN_SCORE and min(f.box.width, f.box.height) >= MIN_SIZE]


def _box(f: Face) -> np.ndarray:
    return np.array([[f.box.x1, f.box.y1, f.box.x2, f.box.y2]])


def recall(store: str) -> None:
    mt = load_analyzer(FacesConfig(backend="portable", models_dir=store, providers="cpu", detector="mtcnn"))
    bf = load_analyzer(FacesConfig(backend="portable", models_dir=store, providers="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = demo_inputs(Path(tmp))
    shown = sum(DEMO_FACES[n] for n, _, _ in inputs)
    counts = {"mtcnn": 0, "blazeface": 0, "blazeface (no prior)": 0}
    extra = dict.fromkeys(counts, 0)
    ious, marks, yaws, rolls = [], [], [], []
    for name, rgb, prior in inputs:
        ref = _kept(mt.analyze(rgb))
        runs = {"mtcnn": ref, "blazeface": _kept(bf.analyze(rgb, prior)), "blazeface (no prior)": _kept(bf.analyze(rgb))}
        for side, faces in runs.items():
            counts[side] += min(len(faces), DEMO_FACES[name])
            extra[side] += max(0, len(faces) - DEMO_FACES[name])
        for f in ref:
            if not runs["blazeface"]:
                continue
            iou = overlaps(_box(f), np.vstack([_box(g) for g in runs["blazeface"]]))[0]
            g = runs["blazeface"][int(np.argmax(iou))]
            if iou.max() < 0.5:
                continue
            ious.append(float(iou.max()))
            marks.append(float(np.max(np.linalg.norm(np.subtract(f.landmarks5, g.landmarks5), axis=1)) / f.box.width))
            if f.pose and g.pose:
                yaws.append(abs(f.pose.yaw - g.pose.yaw))
                rolls.append(abs(f.pose.roll - g.pose.roll))
    print(f"demo inputs: {len(inputs)} decodable images showing {shown} faces "
          f"(kept: score >= {MIN_SCORE}, shorter side >= {MIN_SIZE} px)")
    for side in counts:
        print(f"  {side:22s} recall {counts[side]}/{shown}, extra detections {extra[side]}")
    print(f"  agreement with MTCNN over {len(ious)} faces: box IoU median {statistics.median(ious):.2f} (min {min(ious):.2f}); "
          f"worst landmark median {statistics.median(marks):.3f} of the box width (max {max(marks):.3f}); "
          f"|yaw| diff median {statistics.median(yaws):.1f}° (max {max(yaws):.1f}°), "
          f"|roll| diff median {statistics.median(rolls):.1f}° (max {max(rolls):.1f}°)")


def beam_vs_loop(store: str, n: int) -> None:
    """The face stage in Beam (RunInference + BatchElements + selection) vs a plain loop, whole run and steady state."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from facecorpus.faces.face_stage import FaceStage
    from facecorpus.faces.selection import select_faces
    from facecorpus.records import SourceInfo
    from facecorpus.stage import WorkItem

    cfg = FacesConfig(backend="portable", models_dir=store, providers="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(photo_set(2 * n)):
            p = Path(tmp) / f"img{i:05d}.jpg"
            p.write_bytes(data)
            paths.append(str(p))

        def item(path: str) -> WorkItem:
            d = decode_image(Path(path).read_bytes(), ImageConfig())
            return WorkItem(key=Path(path).stem, source=SourceInfo(dataset="bench", id=path), image=d.info,
                            jpeg=b"", pixels=np.asarray(d.rgb))

        def loop(some: list[str]) -> None:
            analyzer = load_analyzer(cfg)
            for path in some:
                it = item(path)
                try:
                    select_faces(analyzer.analyze(it.pixels), cfg, it.image.width, it.image.height)
                except Rejected:
                    pass

        def in_beam(some: list[str]) -> None:
            p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
            out = p | beam.Create(some, reshuffle=False) | "Decode" >> beam.Map(item) | FaceStage(cfg, jpeg_quality=90)
            _ = out["main"] | "Count" >> beam.combiners.Count.Globally()
            p.run().wait_until_finish()

        runs: dict[str, list[tuple[float, float]]] = {"loop": [], "beam": []}  # (CPU, wall) per size
        for k in (n, 2 * n):
            for name, fn in (("loop", loop), ("beam", in_beam)):
                runs[name].append(cpu_wall(lambda fn=fn, k=k: fn(paths[:k])))
    print(f"\nBeam face stage vs plain loop (1024 px group photos, process CPU and wall time, load {load()}):")
    for name, ((cs, ws), (cl, wl)) in runs.items():
        print(f"  {name:5s} whole run {n} images CPU {cs:.1f} s (wall {ws:.1f} s), {2 * n} images CPU {cl:.1f} s "
              f"(wall {wl:.1f} s); steady CPU {(cl - cs) / n * 1000:.0f} ms/image (wall {(wl - ws) / n * 1000:.0f})")
    (ls, ll), (bs, bl) = runs["loop"], runs["beam"]
    for i, what in ((0, "CPU"), (1, "wall")):
        print(f"  ratio beam/loop ({what}): whole run {bs[i] / ls[i]:.2f} ({n} images), {bl[i] / ll[i]:.2f} ({2 * n}), "
              f"steady {(bl[i] - bs[i]) / (ll[i] - ls[i]):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--crops", type=int, default=48)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--store", default=None, help="model store with the portable pack (default: the usual one)")
    ap.add_argument("--beam", type=int, default=0, help="also compare the Beam stage with a plain loop on N images")
    ap.add_argument("--profile", action="store_true", help="also print thread CPU per stage of the default path")
    args = ap.parse_args()
    if args.cores:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(allowed[: args.cores]))
    store = args.store or os.environ.get("FACECORPUS_MODELS")
    try:
        resolve_pack(FacesConfig(backend="portable", models_dir=store))
    except MissingModelPack as e:  # one line, not a traceback: the store is the user's to fill
        sys.exit(f"faces.py: {e} (or pass --store DIR)")
    print(f"cores: {sorted(os.sched_getaffinity(0))}; crops: {args.crops} x 224 px; photos: {args.photos} x 1024x709 "
          f"(six faces); rounds: {args.rounds}")
    recall(store)
    print()
    sets = {"crops": crop_set(args.crops), "photos": photo_set(args.photos)}
    cost(store, sets, args.rounds)
    if args.profile:
        profile(store, sets, args.rounds)
    if args.beam:
        beam_vs_loop(store, args.beam)


if __name__ == "__main__":
    main()
