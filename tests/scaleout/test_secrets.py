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
