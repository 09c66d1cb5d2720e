"""`facecorpus faces IMAGE...`: run a model pack on your own photos and print every face it finds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UserError

if TYPE_CHECKING:  # `facecorpus --help` must not load the record models
    from ..records import Face


def _describe(face: Face) -> list[str]:
    b = face.box
    lines = [f"box ({b.x1:.0f}, {b.y1:.0f})-({b.x2:.0f}, {b.y2:.0f})  {b.width:.0f}x{b.height:.0f} px  score {face.score:.3f}"]
    if face.landmarks5:
        lines.append("landmarks " + " ".join(f"({x:.0f},{y:.0f})" for x, y in face.landmarks5))
    if face.pose:
        lines.append(f"pose yaw {face.pose.yaw:+.1f}  pitch {face.pose.pitch:+.1f}  roll {face.pose.roll:+.1f}")
    if face.eye_openness is not None and face.mouth_openness is not None:
        lines.append(f"eyes open {face.eye_openness:.2f}  mouth open {face.mouth_openness:.2f}")
    if face.expression:
        top = sorted(face.expression.probabilities.items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"expression {face.expression.label} ({', '.join(f'{k} {v:.2f}' for k, v in top)})")
    if face.gender is not None or face.age is not None:
        lines.append(f"gender {face.gender}  age {face.age:g}" if face.age is not None else f"gender {face.gender}")
    if face.quality:
        q = face.quality
        lines.append(f"quality size {q.size_px:.0f} px  blur {q.blur:.0f}  brightness {q.brightness:.0f}  contrast {q.contrast:.0f}")
    return lines


def faces_command(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    pack: Annotated[str, typer.Option("--pack", help="portable, buffalo_l or antelopev2.")] = "portable",
    store: Annotated[str | None, typer.Option("--store", help="Model store (default: $FACECORPUS_MODELS or ~/.cache/facecorpus/models).")] = None,
    providers: Annotated[str, typer.Option("--providers", help="auto, cpu or cuda.")] = "auto",
    detector: Annotated[str, typer.Option("--detector", help="portable: blazeface or mtcnn.")] = "blazeface",
    size_prior: Annotated[str, typer.Option("--size-prior", help="any, or crop (each image is one face crop).")] = "any",
    det_size: Annotated[int, typer.Option("--det-size", help="Detector input side / longest side scanned.")] = 640,
    embedding: Annotated[bool, typer.Option("--embedding", help="insightface: also compute embeddings.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
) -> None:
    """Print the faces a model pack finds in each image: box, score, landmarks, pose, expression, quality, attributes.

    Images are decoded as the pipeline decodes them (EXIF orientation, RGB, longer side at most 1024 px),
    so coordinates refer to that image. Every face the detector reports is listed, before any recipe filter.
    """
    # imported here: `facecorpus` must start fast for every other command (Beam loads with image_check)
    import numpy as np

    from ..image_check import decode_image
    from ..image_config import ImageConfig
    from ..rejection import Rejected, Rejection
    from .analyzer import attribute_models, load_analyzer
    from .attributes import model_attributes
    from .config import FacesConfig
    from .priors import item_prior

    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise UserError(f"faces: {', '.join(missing)} is not a file")
    backend = "portable" if pack == "portable" else "insightface"
    try:
        cfg = FacesConfig(backend=backend, pack=pack, models_dir=store, providers=providers,  # type: ignore[arg-type]
                          det_size=det_size, embedding=embedding, detector=detector, size_prior=size_prior)
    except ValueError as e:
        raise UserError(f"faces: {str(e).splitlines()[-1].strip()}") from None
    analyzer = load_analyzer(cfg)
    models = attribute_models(cfg)
    for path in images:
        try:
            decoded = decode_image(path.read_bytes(), ImageConfig())
        except Rejected as r:
            _emit(as_json, {"image": str(path), "error": r.reason, "detail": r.detail}, f"{path}: {r.reason}: {r.detail}")
            continue
        outcome = analyzer.analyze_batch([np.asarray(decoded.rgb)], priors=[item_prior({}, cfg.size_prior)])[0]
        if isinstance(outcome, Rejection):
            _emit(as_json, {"image": str(path), "error": outcome.reason, "detail": outcome.detail},
                  f"{path}: {outcome.reason}: {outcome.detail}")
            continue
        if as_json:
            typer.echo(json.dumps({
                "image": str(path),
                "width": decoded.info.width,
                "height": decoded.info.height,
                "faces": [
                    {**f.model_dump(mode="json", exclude_none=True),
                     "attributes": {k: v.model_dump(mode="json", exclude_none=True) for k, v in model_attributes(f, models).items()}}
                    for f in outcome
                ],
            }))
            continue
        typer.echo(f"{path}: {len(outcome)} face(s) in {decoded.info.width}x{decoded.info.height} ({analyzer.name})")
        for i, face in enumerate(outcome):
            lines = _describe(face)
            typer.echo(f"  [{i}] " + lines[0])
            for line in lines[1:]:
                typer.echo("      " + line)


def _emit(as_json: bool, obj: dict, text: str) -> None:
    typer.echo(json.dumps(obj) if as_json else text)
