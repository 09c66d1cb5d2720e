"""Recipes: validation, overrides, and one-line errors for user mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecorpus.errors import UserError
from facecorpus.recipe import load_recipe
from facecorpus.resources import data_dir
from facecorpus.sources.config import FairFaceSource
from tests.support.helpers import run_cli, write_recipe


def _recipe(tmp_path: Path, **extra) -> dict:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    data = {"name": "t", "sources": [{"type": "folder", "path": "imgs"}]}
    data.update(extra)
    return data


def test_shipped_recipes_load():
    demo = load_recipe(data_dir("pipelines") / "demo.yaml")
    assert demo.generation.generator == "openai" and demo.generation.openai.base_url == "local"
    assert demo.generation.categories == ["demographics", "expression", "pose"]
    assert demo.faces.backend == "portable" and demo.faces.unit == "face"
    ff = load_recipe(data_dir("pipelines") / "fairfacegpt.yaml")
    assert isinstance(ff.sources[0], FairFaceSource) and ff.sources[0].split == "val"
    assert len(ff.generation.categories) == 8 and ff.generation.categories[:2] == ["demographics", "facial_structure"]


def test_relative_paths_resolve_against_the_recipe(tmp_path: Path):
    r = load_recipe(write_recipe(tmp_path / "r.yaml", _recipe(tmp_path)))
    assert r.sources[0].path == str(tmp_path / "imgs")


def test_set_overrides_nested_and_list_items(tmp_path: Path):
    path = write_recipe(tmp_path / "r.yaml", _recipe(tmp_path))
    r = load_recipe(path, ["output.samples_per_shard=7", "sources.0.dataset=mine", "generation.categories=[pose, detail]"])
    assert r.output.samples_per_shard == 7
    assert r.sources[0].dataset == "mine"
    assert r.generation.categories == ["pose", "detail"]


@pytest.mark.parametrize(
    ("mutate", "overrides", "expected"),
    [
        (lambda d: d["sources"][0].update(splitt="val"), [], "sources[0].splitt: unknown key"),
        (lambda d: d.update(output={"samples_per_shard": "many"}), [], "output.samples_per_shard"),
        (lambda d: d.update(colour="red"), [], "colour: unknown key"),
        (lambda d: None, ["output.samples_per_shard=0"], "greater than or equal to 1"),
        (lambda d: None, ["sources.3.path=x"], "not an index"),
        (lambda d: d["sources"][0].update(type="ftp"), [], "sources[0]: Input tag 'ftp'"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, mutate, overrides, expected):
    data = _recipe(tmp_path)
    mutate(data)
    path = write_recipe(tmp_path / "r.yaml", data)
    with pytest.raises(UserError) as e:
        load_recipe(path, overrides)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(UserError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "missing.yaml", "--out", "x"],
        ["run", "{recipe}", "--out", "{out}", "--set", "nonsense"],
        ["run", "{recipe}", "--out", "{out}", "--set", "sources.0.path=/does/not/exist"],
        ["validate", "/does/not/exist"],
        ["stats", "/does/not/exist"],
    ],
)
def test_cli_user_errors_are_one_line_without_traceback(tmp_path: Path, args):
    recipe = write_recipe(tmp_path / "r.yaml", _recipe(tmp_path))
    filled = [a.format(recipe=recipe, out=tmp_path / "out") for a in args]
    proc = run_cli(*filled, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "apitools" not in ln]
    assert lines, proc.stderr
    assert len(lines) <= 2, proc.stderr


def test_execution_details_leave_the_recipe_identity_alone(tmp_path: Path):
    """The recipe sha256 (and so the resume fingerprint) ignores how a run executes, not what it writes."""
    path = write_recipe(tmp_path / "r.yaml", _recipe(tmp_path))
    base = load_recipe(path).sha256()
    same = [
        "runner.runner=DataflowRunner", "output.grouping=shuffle", "faces.models_dir=/elsewhere",
        "faces.batch_size=64", "faces.model_copies=2", "faces.device_id=1", "generation.openai.concurrency=64",
        "generation.openai.adaptive_concurrency=false",
        "generation.openai.timeout_s=600", "generation.limits.rpm=500", "generation.retries.max_attempts=2",
        "generation.cache.dir=/other/cache", "generation.batch.poll_initial_s=1", "generation.batch.poll_max_s=30",
        "generation.batch.max_wait_h=48", "generation.batch.state_dir=/elsewhere/batches",
    ]
    for override in same:
        assert load_recipe(path, [override]).sha256() == base, override
    different = ["faces.backend=portable", "faces.providers=cuda", "generation.openai.temperature=0.9",
                 "generation.openai.model=other", "output.samples_per_shard=7", "image.max_side=512",
                 "generation.batch.max_requests_per_file=10", "generation.openai.max_tokens=99"]
    for override in different:
        assert load_recipe(path, [override]).sha256() != base, override


def test_download_pacing_is_not_part_of_a_web_source_identity(tmp_path: Path):
    from facecorpus.recipe import source_identity

    (tmp_path / "m.parquet").write_bytes(b"")
    data = {"name": "t", "sources": [{"type": "laion", "path": str(tmp_path / "m.parquet")}]}
    path = write_recipe(tmp_path / "r.yaml", data)
    r = load_recipe(path)
    fast = load_recipe(path, ["sources.0.download.threads=256", "sources.0.download.timeout_s=30"])
    resized = load_recipe(path, ["sources.0.download.image_size=512"])
    assert source_identity(fast.sources[0]) == source_identity(r.sources[0]) and fast.sha256() == r.sha256()
    assert source_identity(resized.sources[0]) != source_identity(r.sources[0]) and resized.sha256() != r.sha256()


def test_identity_is_computed_from_the_marks_on_the_fields():
    """A field marked EXECUTION_ONLY leaves the identity at any depth; an unmarked one stays in it."""
    from typing import Annotated

    from pydantic import Field

    from facecorpus.config import EXECUTION_ONLY, Config, identity

    class Inner(Config):
        pace: Annotated[int, EXECUTION_ONLY] = 1
        size: int = 2

    class Outer(Config):
        inner: Inner = Field(default_factory=Inner)
        many: list[Inner] = Field(default_factory=lambda: [Inner(), Inner(pace=5)])
        by_name: dict[str, Inner] = Field(default_factory=lambda: {"a": Inner()})
        where: Annotated[Inner, EXECUTION_ONLY] = Field(default_factory=Inner)

    assert identity(Outer()) == {"inner": {"size": 2}, "many": [{"size": 2}, {"size": 2}], "by_name": {"a": {"size": 2}}}


def test_every_source_type_is_registered_by_its_declaration_and_names_its_reader(tmp_path: Path):
    import apache_beam as beam

    from facecorpus.sources.config import SOURCE_TYPES

    assert set(SOURCE_TYPES) >= {"fairface", "folder", "webdataset", "laion", "facecaption", "img2dataset"}
    needs = {"fairface": {"images": "x.zip", "labels": ["l.csv"]}, "celeba": {"root": str(tmp_path)},
             "rafdb": {"root": str(tmp_path)}, "utkface": {"images": str(tmp_path)},
             "labelled": {"table": "t.csv", "images": str(tmp_path), "dataset": "d", "licence": "l",
                          "attributes": {"smiling": {"column": "Smiling"}}}}
    for name, cls in SOURCE_TYPES.items():
        cfg = cls.model_validate({"type": name, **needs.get(name, {"path": str(tmp_path)})})
        assert isinstance(cfg.reader(None), beam.PTransform), name
