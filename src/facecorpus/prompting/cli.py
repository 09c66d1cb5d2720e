"""`facecorpus prompts …`: show exactly what would be sent, estimate a run, re-lock edited templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="Prompt sets: render what would be sent, dry-run estimates, lock hashes.")


def _short_url(url: str) -> str:
    if not url.startswith("data:"):
        return url
    import base64
    import hashlib
    import io

    from PIL import Image

    raw = base64.b64decode(url.split(",", 1)[1])
    w, h = Image.open(io.BytesIO(raw)).size
    return f"<JPEG {w}x{h}, {len(raw) // 1024} kB, sha256 {hashlib.sha256(url.encode()).hexdigest()[:16]}…>"


def _print_request(i: int, req: dict[str, Any]) -> None:
    body = req["body"]
    params = {k: v for k, v in body.items() if k not in ("messages", "response_format")}
    typer.echo(f"── request {i + 1}: {req['category'] or 'all categories'}  {json.dumps(params)}")
    if req.get("stored_question"):
        typer.echo(f"   stored question: {req['stored_question']}")
    for m in body["messages"]:
        content = m["content"]
        if isinstance(content, str):
            parts = [content]
        else:
            parts = [p["text"] if p["type"] == "text" else f"[image_url {_short_url(p['image_url']['url'])}]" for p in content]
        typer.echo(f"   [{m['role']}]")
        for part in parts:
            for line in part.splitlines() or [""]:
                typer.echo(f"     {line}")
    if body.get("response_format"):
        schema = body["response_format"]["json_schema"]
        typer.echo(f"   response_format: json_schema '{schema['name']}' strict={schema.get('strict')}")


@app.command("render")
def render_command(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    sample: Annotated[str | None, typer.Option("--sample", help="Key of the sample to show.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: dotted.key=value.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render every sample; estimate tokens and cost. Calls nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --sample: the exact request bodies as JSON.")] = False,
) -> None:
    """Show the exact requests for one sample (--sample KEY) or estimate a whole run (--dry-run), for
    every LLM stage before validation: annotation, generation, paraphrase. With --json, one stage's
    requests are an object; several stages' a list of such objects (each with its `stage`)."""
    from ..errors import UserError
    from ..generation.dry_run import estimates, rendered_requests, total_lines
    from ..graph import prompts_until_generation
    from ..preflight import preflight
    from ..recipe import load_recipe

    if sample is None and not dry_run:
        raise UserError("give --sample KEY to see one sample's requests, or --dry-run to estimate the whole run")
    r = load_recipe(recipe, set_ or [])
    if sample is not None:
        rows = rendered_requests(prompts_until_generation(r, sample), sample, r.name)
        if as_json:
            typer.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2, ensure_ascii=False))
        else:
            for found in rows:
                typer.echo(
                    f"sample {found['key']} ({found['stage']}): prompt set {found['prompt_set']} v{found['prompt_version']}, "
                    f"prompt sha256 {found['prompt_sha256']}, image {'attached' if found['image_attached'] else 'not attached'}"
                )
                for i, req in enumerate(found["requests"]):
                    _print_request(i, req)
    if dry_run:
        checked = preflight(r, dry_run=True)
        configs = {"annotate": checked.annotation, "generate": checked.generation, "paraphrase": checked.paraphrase}
        found = estimates(prompts_until_generation(r), {k: v for k, v in configs.items() if v is not None})
        if not found:
            typer.echo("no LLM requests: nothing reaches an LLM stage in this recipe")
        for est in found:
            for line in est.lines():
                typer.echo(line)
        for line in total_lines(found):
            typer.echo(line)
        if r.generation.judge.enabled:
            typer.echo("judge: not estimated (it scores the texts generation writes; about one request per sample)")


@app.command("lock")
def lock_command(
    folder: Annotated[Path | None, typer.Option("--dir", help="Prompt folder (default: the shipped prompts/).")] = None,
) -> None:
    """Re-hash the templates into manifest.yaml; each set whose templates changed gets a new version."""
    from ..prompting.promptset import lock_manifest

    changes = lock_manifest(folder)
    typer.echo("\n".join(changes) if changes else "manifest up to date")
