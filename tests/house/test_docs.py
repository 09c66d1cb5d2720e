"""Docs that cannot drift: docs/recipes.md is generated from the recipe models, and every `facecorpus …`
command the README and docs/ show exists, with the options they show."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from facecorpus import recipe_docs
from facecorpus.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_recipes_md_is_generated_from_the_models():
    assert recipe_docs.main(["--check", str(REPO / "docs" / "recipes.md")]) == 0, "run `make docs`"


def test_a_stale_recipes_md_is_noticed(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    stale = tmp_path / "recipes.md"
    stale.write_text((REPO / "docs" / "recipes.md").read_text(encoding="utf-8").replace("`max_faces`", "`max_face`", 1))
    assert recipe_docs.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


def test_a_field_without_a_description_fails_the_generator(monkeypatch: pytest.MonkeyPatch):
    from facecorpus.image_config import ImageConfig

    monkeypatch.setattr(ImageConfig.model_fields["jpeg_quality"], "description", None)
    with pytest.raises(recipe_docs.MissingDescription, match="image.jpeg_quality"):
        recipe_docs.render()


def _snippets(text: str) -> list[str]:
    """Code as the docs show it: fenced blocks line by line, and inline `code` spans."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        out += [ln for ln in block.splitlines() if ln.strip()]
    out += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return out


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """(command path) → the --options shown with it, for every `facecorpus …` in the docs' code."""
    root = typer.main.get_command(app)
    found: dict[tuple[str, ...], set[str]] = {}
    for doc in DOCS:
        for snippet in _snippets(doc.read_text(encoding="utf-8")):
            for m in re.finditer(r"(?:^|[\s$(])facecorpus ((?:[^\s|;&)]+ ?)+)", snippet):
                words = m.group(1).split()
                if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
                    continue  # prose like "facecorpus's", or the package name
                cmd, path = root, []
                for w in words:
                    if w in getattr(cmd, "commands", {}):  # a group (typer vendors its own click)
                        cmd, path = cmd.commands[w], [*path, w]
                    elif not path:
                        raise AssertionError(f"{doc.name}: `facecorpus {w}` is not a command ({snippet!r})")
                    else:
                        break
                options = found.setdefault(tuple(path), set())
                before_beam_args = words[: words.index("--")] if "--" in words else words
                options |= {w.split("=")[0] for w in before_beam_args if w.startswith("--")}
    return found


def test_every_documented_command_exists_with_the_options_shown():
    root = typer.main.get_command(app)
    commands = documented_commands()
    assert ("run",) in commands and ("prompts", "render") in commands  # the parser sees the README
    runner = CliRunner()
    for path, options in sorted(commands.items()):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        cmd = root
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
        assert options <= known, f"facecorpus {' '.join(path)}: documented options {sorted(options - known)} do not exist"


def test_the_readme_names_every_shipped_recipe():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((REPO / "pipelines").glob("*.yaml")) if f"pipelines/{p.name}" not in readme]
    assert not missing, f"README.md's list of shipped recipes lacks {missing}"
