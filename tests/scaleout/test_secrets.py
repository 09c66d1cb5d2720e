"""LLM API keys that reach remote workers: a mounted file, a Secret Manager version, or (local runs) an
environment variable — never pipeline options; errors name the source, never the key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from facecorpus.errors import UserError
from facecorpus.generation.config import OpenAIConfig
from facecorpus.generation.secrets import api_key, check_reachable_by_workers

KEY = "sk-test-0123456789abcdef"


def test_file_wins_then_secret_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "key").write_text(KEY + "\n")
    monkeypatch.setenv("MY_KEY", "from-env")
    assert api_key(OpenAIConfig(api_key_file=str(tmp_path / "key"), api_key_env="MY_KEY")) == KEY
    assert api_key(OpenAIConfig(api_key_env="MY_KEY")) == "from-env"
    assert api_key(OpenAIConfig(api_key_env=None)) is None


class _SecretManager:
    """Stands in for google.cloud.secretmanager's client: Secret Manager cannot be reached from here."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.asked: list[str] = []

    def access_secret_version(self, request: dict) -> SimpleNamespace:
        self.asked.append(request["name"])
        if request["name"] not in self.secrets:
            raise PermissionError(f"403 Permission denied on resource {request['name']}")
        return SimpleNamespace(payload=SimpleNamespace(data=self.secrets[request["name"]].encode()))


def test_secret_manager_name_gets_latest_version_by_default():
    client = _SecretManager({"projects/p/secrets/openai/versions/latest": KEY})
    o = OpenAIConfig(api_key_secret="projects/p/secrets/openai", api_key_env="UNSET_VARIABLE")
    assert api_key(o, secret_client=client) == KEY
    assert client.asked == ["projects/p/secrets/openai/versions/latest"]


def test_failures_are_one_line_without_the_key(tmp_path: Path):
    with pytest.raises(UserError, match="api_key_file .* cannot be read") as e:
        api_key(OpenAIConfig(api_key_file=str(tmp_path / "missing")))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="api_key_secret projects/p/secrets/x/versions/2 cannot be read"):
        api_key(OpenAIConfig(api_key_secret="projects/p/secrets/x/versions/2"), secret_client=_SecretManager({}))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="holds an empty key"):
        api_key(OpenAIConfig(api_key_file=str(tmp_path / "empty")))


def test_remote_workers_cannot_use_an_environment_variable():
    with pytest.raises(UserError, match="DataflowRunner workers do not get this machine's environment"):
        check_reachable_by_workers(OpenAIConfig(api_key_env="OPENAI_API_KEY"), False, "DataflowRunner")
    check_reachable_by_workers(OpenAIConfig(api_key_env="OPENAI_API_KEY"), True, "FnApiRunner")
    check_reachable_by_workers(OpenAIConfig(api_key_secret="projects/p/secrets/s"), False, "DataflowRunner")


def test_key_sources_do_not_change_the_recipe_identity(tmp_path: Path):
    from facecorpus.recipe import validate_recipe

    base = {"name": "x", "sources": [{"type": "folder", "path": str(tmp_path)}],
            "generation": {"generator": "openai", "openai": {"api_key_env": "K"}}}
    moved = {**base, "generation": {"generator": "openai", "openai": {"api_key_env": "K",
                                                                      "api_key_secret": "projects/p/secrets/s"}}}
    assert validate_recipe(base, "x", tmp_path).sha256() == validate_recipe(moved, "x", tmp_path).sha256()


def _pickled_dofns(p) -> bytes:
    """Every DoFn of the pipeline's proto as the plain pickle bytes Beam ships (its payloads are
    compressed — bz2 or zlib — and base64-encoded), concatenated."""
    import base64
    import bz2
    import contextlib
    import zlib

    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    found = []
    for t in p.to_runner_api().components.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).do_fn.payload
            raw = base64.b64decode(payload)
            for decompress in (bz2.decompress, zlib.decompress):
                with contextlib.suppress(OSError, ValueError, zlib.error):
                    found.append(decompress(raw))
                    break
    assert len(found) > 10
    return b"".join(found)


def test_the_key_is_not_in_what_the_job_is_submitted_with(tmp_path: Path):
    """What a runner is given — the pipeline options and the graph (its proto carries every pickled DoFn,
    the LLM stage's handler included) — and the run.json the launcher writes hold where the key is read
    from (a file, a Secret Manager name), never the key; the workers still read it."""
    import json
    from datetime import UTC, datetime

    import apache_beam as beam

    from facecorpus.demo import photo_paths
    from facecorpus.execution import execution_for
    from facecorpus.graph import build_pipeline
    from facecorpus.output.resume import plan_output
    from facecorpus.preflight import Checked
    from facecorpus.recipe import Recipe

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(photo_paths()["hanks"].read_bytes())
    (tmp_path / "key").write_text(KEY + "\n")
    recipe = Recipe.model_validate({
        "name": "secret", "sources": [{"type": "folder", "path": str(tmp_path / "photos")}], "faces": {"backend": "none"},
        "generation": {"generator": "openai", "cache": {"enabled": False},
                       "openai": {"base_url": "http://127.0.0.1:9/v1", "api_key_file": str(tmp_path / "key"),
                                  "api_key_secret": "projects/p/secrets/openai", "preflight": False}}})
    execution = execution_for(recipe.runner.runner, recipe.runner.options, ["--direct_num_workers=2"])
    p = beam.Pipeline(options=execution.options)
    build_pipeline(p, recipe, str(tmp_path / "out"), datetime(2026, 1, 1, tzinfo=UTC),
                   Checked(recipe.generation, None), None, execution)
    graph = _pickled_dofns(p)
    assert str(tmp_path / "key").encode() in graph and KEY.encode() not in graph  # the file's name travels, not the key
    assert KEY not in json.dumps(execution.options.get_all_options(), default=str)
    state = plan_output(recipe, str(tmp_path / "out"), datetime(2026, 1, 1, tzinfo=UTC), runner=execution.record())
    assert state.run_info["recipe"] == "secret" and KEY not in json.dumps(state.run_info)
    assert api_key(recipe.generation.openai) == KEY  # what a worker reads
