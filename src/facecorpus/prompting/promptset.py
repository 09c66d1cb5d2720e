"""Prompt sets: versioned Jinja2 templates listed in `prompts/manifest.yaml` with their sha256.

A prompt set is a folder of templates plus its manifest entry: version, mode (`per_category`: one
request per QA category, `structured`: one JSON request per sample, or `rewrite`: one request per text
the templates generator wrote, asking only to rephrase it), the topic phrase of each
category, and the sha256 of every template. Loading checks every hash, so a template edited without
`facecorpus prompts lock` (which re-hashes and bumps the version) is refused instead of silently
producing records under an old version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml

from ..errors import UserError
from ..resources import data_dir
from .phrases import LABEL_STYLES

MANIFEST = "manifest.yaml"
Mode = Literal["per_category", "structured", "annotate", "paraphrase", "rewrite", "judge"]


@dataclass(frozen=True)
class PromptSet:
    """One loaded, verified prompt set."""

    name: str
    version: str
    mode: Mode
    topics: dict[str, str]
    templates: dict[str, jinja2.Template]
    template_sha256: dict[str, str]
    caption_from: str | None = None
    bounds: dict[str, int] = field(default_factory=dict)
    origin: str = ""
    #: structured sets: `model` writes each question, or `fixed` questions come from question.j2
    questions: str = "model"
    #: how templates' `person` word is made from the labels (prompting.phrases.LABEL_STYLES)
    label_style: str = "natural"

    @property
    def sha256(self) -> str:
        """Hash of the set as a whole (version, mode, topics, template hashes, bounds)."""
        doc = {
            "name": self.name,
            "version": self.version,
            "mode": self.mode,
            "topics": self.topics,
            "templates": self.template_sha256,
            "caption_from": self.caption_from,
            "bounds": self.bounds,
            "questions": self.questions,
        }
        if self.label_style != "natural":  # sets without the key keep the hash they always had
            doc["label_style"] = self.label_style
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def topic(self, category: str) -> str:
        try:
            return self.topics[category]
        except KeyError:
            raise UserError(
                f"prompt set '{self.name}' has no topic for category '{category}'; "
                f"add it under generation.topics in the recipe (known: {', '.join(self.topics)})"
            ) from None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prompts_root(custom: str | None = None) -> Path:
    """The folder holding manifest.yaml: the recipe's `generation.prompts_dir`, else the shipped one."""
    root = Path(custom).expanduser() if custom else data_dir("prompts")
    if not (root / MANIFEST).is_file():
        raise UserError(f"prompt folder {root} has no {MANIFEST}")
    return root


def read_manifest(root: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load((root / MANIFEST).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{root / MANIFEST}: not valid YAML ({e})") from None
    if not isinstance(doc.get("sets"), dict):
        raise UserError(f"{root / MANIFEST}: expected a 'sets' mapping")
    return doc


def _environment(root: Path) -> jinja2.Environment:
    # StrictUndefined: a template that names a variable the renderer does not provide fails loudly.
    # No autoescape: the output is chat text, not HTML.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def load_prompt_set(
    name: str,
    custom_root: str | None = None,
    extra_topics: dict[str, str] | None = None,
    bounds: dict[str, int] | None = None,
) -> PromptSet:
    """Load and verify prompt set `name`; raises UserError naming the file when anything is off.

    `extra_topics` and `bounds` (the recipe's) are laid over the manifest's; both are part of the
    set's hash and of every rendered prompt's hash.
    """
    root = prompts_root(custom_root)
    sets = read_manifest(root)["sets"]
    if name not in sets:
        raise UserError(f"unknown prompt set '{name}' in {root / MANIFEST} (known: {', '.join(sets)})")
    entry = sets[name]
    env = _environment(root)
    templates: dict[str, jinja2.Template] = {}
    hashes: dict[str, str] = {}
    for role, spec in (entry.get("templates") or {}).items():
        path = root / spec["file"]
        if not path.is_file():
            raise UserError(f"prompt set '{name}': template file {path} is missing")
        actual = file_sha256(path)
        if actual != spec.get("sha256"):
            raise UserError(
                f"prompt set '{name}': {spec['file']} does not match its sha256 in {MANIFEST}; "
                "if the edit is intended run `facecorpus prompts lock` (it bumps the version)"
            )
        try:
            templates[role] = env.get_template(spec["file"])
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"prompt set '{name}': {spec['file']} line {e.lineno}: {e.message}") from None
        hashes[role] = actual
    mode = entry.get("mode")
    questions = entry.get("questions", "model")
    needed = {"per_category": {"system", "instruction", "question"}, "structured": {"system", "user"},
              "annotate": {"system", "user"}, "paraphrase": {"system", "user"}, "rewrite": {"system", "user"},
              "judge": {"system", "user"}}.get(mode or "")
    if needed is None:
        raise UserError(f"prompt set '{name}': mode must be per_category, structured, annotate, paraphrase, rewrite or judge "
                        f"(got {mode!r})")
    if questions not in ("model", "fixed"):
        raise UserError(f"prompt set '{name}': questions must be model or fixed (got {questions!r})")
    if questions == "fixed":
        needed = needed | {"question"}
    label_style = entry.get("label_style", "natural")
    if label_style not in LABEL_STYLES:
        raise UserError(f"prompt set '{name}': label_style must be one of {', '.join(LABEL_STYLES)} (got {label_style!r})")
    if missing := needed - templates.keys():
        raise UserError(f"prompt set '{name}' lacks templates: {', '.join(sorted(missing))}")
    topics = dict(entry.get("topics") or {})
    topics.update(extra_topics or {})
    return PromptSet(
        name=name,
        version=str(entry.get("version")),
        mode=mode,
        topics=topics,
        templates=templates,
        template_sha256=hashes,
        caption_from=entry.get("caption_from"),
        bounds={**{k: int(v) for k, v in (entry.get("bounds") or {}).items()}, **(bounds or {})},
        origin=str(entry.get("origin", "")),
        questions=questions,
        label_style=label_style,
    )


def lock_manifest(root: Path | None = None) -> list[str]:
    """Re-hash every template; bump the version (an integer) of each set whose templates changed.

    Returns one line per changed set. Used by `facecorpus prompts lock` after editing templates.
    """
    root = root or prompts_root()
    path = root / MANIFEST
    text = path.read_text(encoding="utf-8")
    doc = read_manifest(root)
    changes: list[str] = []
    for name, entry in doc["sets"].items():
        changed = False
        for spec in (entry.get("templates") or {}).values():
            actual = file_sha256(root / spec["file"])
            if spec.get("sha256") != actual:
                spec["sha256"] = actual
                changed = True
        if changed:
            old = str(entry.get("version", "0"))
            entry["version"] = str(int(old) + 1) if old.isdigit() else old + ".1"
            changes.append(f"{name}: version {old} -> {entry['version']}")
    if changes:
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    return changes
