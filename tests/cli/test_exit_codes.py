"""Exit codes tell the truth: a run that writes nothing, or loses too many inputs to infrastructure
failures, exits 1 with one line (what happened, how many, the command that retries); `validate` calls
an empty output empty. Real command line; the LLM endpoint is the loopback fault server."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from facecorpus.outcome import run_failure
from tests.cli.test_user_errors import QUIET, build_inputs, recipe_data
from tests.support.helpers import run_cli, write_recipe
from tests.support.llm_fault_server import FaultServer, Rule

FAILED = "facecorpus: run failed: "


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_inputs(tmp_path_factory.mktemp("exit-codes") / "in")


def _failure_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(FAILED)]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_header_only_label_file_exits_1_and_validate_calls_it_empty(inputs: Path, tmp_path: Path) -> None:
    labels = tmp_path / "header_only.csv"
    labels.write_text("file,age,gender,race,service_test\n")
    r = write_recipe(tmp_path / "r.yaml", recipe_data(inputs, labels=[str(labels)]))
    out = tmp_path / "out"
    proc = run_cli("run", str(r), "--out", str(out), env=QUIET)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the sources gave no inputs" in _failure_line(proc.stderr)
    check = run_cli("validate", str(out))
    assert check.returncode == 1 and "valid:" not in check.stdout
    assert f"EMPTY: {out} is consistent but holds no samples (0 rejects" in check.stderr, check.stderr


def test_every_request_refused_with_preflight_off_exits_1(inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultServer(require_key="the-right-key") as srv:
        data = {**recipe_data(inputs), "generation": {
            "generator": "openai", "prompt_set": "compact", "categories": ["expression"], "cache": {"dir": str(tmp_path / "cache")},
            "openai": {"base_url": srv.base_url, "api_key_env": "FACECORPUS_TEST_WRONG_KEY", "preflight": False}}}
        r = write_recipe(tmp_path / "r.yaml", data)
        proc = run_cli("run", str(r), "--out", str(tmp_path / "out"), env={**QUIET, "FACECORPUS_TEST_WRONG_KEY": "wrong"})
        assert srv.count() >= 3  # the requests really went out and were refused
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = _failure_line(proc.stderr)
    assert "3 of 3 inputs failed for infrastructure reasons (llm_error 3)" in line, line
    assert "0 written" in line and "not retryable" in line and "new --out" in line, line
    assert "wrong" not in line  # the key's value is never printed


def test_a_collapsed_demo_exits_1_and_the_command_it_names_finishes_it(face_models: dict[str, str], tmp_path: Path) -> None:
    """The demo against an endpoint that fails every request (as a saturated server does): exit 1, the
    line counts the llm_error rejects and names `facecorpus demo … --resume --retry-rejects`; once the
    endpoint recovers, exactly that command writes them. The demo's own prompt set is `rewrite`, where a
    failed request keeps the template text (flagged `template_fallback`), so this run asks the model
    for the texts (`compact`); the fault server's one canned sentence per category is not what the junk
    checks are tested on here (off)."""
    out = tmp_path / "demo"
    with FaultServer(rules=[Rule("500")]) as srv:
        sets = ["--set", "generation.prompt_set=compact", "--set", "validation.junk=off",
                "--set", f"generation.openai.base_url={srv.base_url}", "--set", "generation.openai.api_key_env=null",
                "--set", "generation.openai.preflight=false",
                "--set", "generation.retries.max_attempts=2", "--set", "generation.retries.initial_s=0.01",
                "--set", f"generation.cache.dir={tmp_path / 'cache'}"]
        proc = run_cli("demo", "--out", str(out), *sets, env={**QUIET, **face_models})
        assert proc.returncode == 1, proc.stderr[-3000:]
        line = _failure_line(proc.stderr)
        stats = json.loads((out / "stats.json").read_text())
        n = stats["by_reason"]["llm_error"]
        assert n > 0.5 * stats["inputs"] and stats["written"] == 0, stats
        assert f"{n} of {stats['inputs']} inputs failed for infrastructure reasons (llm_error {n}" in line, line
        command = line.split("retry them with: ", 1)[1]
        assert command == shlex.join(["facecorpus", "demo", "--out", str(out), *sets, "--resume", "--retry-rejects"])
        srv.rules.clear()  # the endpoint recovers
        again = run_cli(*shlex.split(command)[1:], env={**QUIET, **face_models})
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads((out / "stats.json").read_text())
    assert after["written"] >= n - after["by_reason"].get("answer_too_short", 0) - after["by_reason"].get("label_conflict", 0)
    assert "llm_error" not in after["by_reason"], after["by_reason"]
    assert run_cli("validate", str(out)).returncode == 0


def test_rewrites_lost_to_a_refusing_endpoint_exit_1_although_the_template_texts_are_written(
        inputs: Path, tmp_path: Path) -> None:
    """Rewrite mode keeps the template text when a request fails, so every input is written; the run must
    still say that the LLM work was lost: exit 1, the count, and the command that does it again (the
    cache holds what came, so only the lost requests go out again; the endpoint down mid-run is the
    same reason, llm_error, after the retries)."""
    out = tmp_path / "out"
    with FaultServer(rules=[Rule("400")]) as srv:
        data = {**recipe_data(inputs), "generation": {
            "generator": "openai", "prompt_set": "rewrite", "categories": ["demographics"],
            "cache": {"dir": str(tmp_path / "cache")},
            "openai": {"base_url": srv.base_url, "api_key_env": None, "preflight": False}}}
        r = write_recipe(tmp_path / "r.yaml", data)
        proc = run_cli("run", str(r), "--out", str(out), env=QUIET)
        sent = srv.count()
        assert proc.returncode == 1, proc.stderr[-3000:]
        line = _failure_line(proc.stderr)
        stats = json.loads((out / "stats.json").read_text())
        assert stats["written"] == 3 and stats["llm"]["rewrite"]["requests"] == 6 == sent  # caption + 1 answer each
        assert "6 of 6 LLM rewrite requests failed (llm_error 6)" in line and "3 written" in line, line
    command = line.split("run again from scratch (cached answers are not asked for again): ", 1)[1]
    assert command == shlex.join(["facecorpus", "run", str(r), "--out", str(out)]) + f" (after removing {out})"
    assert run_cli("validate", str(out)).returncode == 0  # what it wrote is a valid output


@pytest.mark.parametrize(("stats", "limit", "expected"), [
    ({"inputs": 10, "written": 10, "retryable_rejects": 0, "by_reason": {},
      "llm": {"rewrite": {"requests": 40, "lost": 5, "lost_by": {"llm_error": 5}}}}, 0.1,
     "5 of 40 LLM rewrite requests failed (llm_error 5)"),
    ({"inputs": 10, "written": 10, "retryable_rejects": 0, "by_reason": {},
      "llm": {"rewrite": {"requests": 40, "lost": 4, "lost_by": {"llm_error": 4}}}}, 0.1, None),
    ({"inputs": 100, "written": 95, "retryable_rejects": 5, "retryable_by_reason": {"timeout": 5}, "by_reason": {"timeout": 5}},
     0.1, None),
    ({"inputs": 100, "written": 85, "retryable_rejects": 15, "retryable_by_reason": {"timeout": 15}, "by_reason": {"timeout": 15}},
     0.1, "15 of 100 inputs failed for infrastructure reasons (timeout 15)"),
    ({"inputs": 100, "written": 85, "retryable_rejects": 15, "retryable_by_reason": {"timeout": 15}, "by_reason": {"timeout": 15}},
     0.2, None),
    ({"inputs": 10, "written": 0, "retryable_rejects": 0, "by_reason": {"not_image": 10}}, 0.1,
     "nothing written: all 10 inputs were rejected (not_image 10)"),
    ({"inputs": 0, "written": 0, "retryable_rejects": 0, "by_reason": {}}, 0.1, "the sources gave no inputs"),
    ({"inputs": 20, "written": 17, "retryable_rejects": 0, "by_reason": {"llm_error": 3}}, 0.1,
     "3 of 20 inputs failed for infrastructure reasons (llm_error 3)"),
])
def test_the_threshold_and_the_wording(stats: dict, limit: float, expected: str | None) -> None:
    got = run_failure(stats, limit, "facecorpus run r.yaml --out o --resume --retry-rejects")
    if expected is None:
        assert got is None
    else:
        assert got is not None and expected in got, got
        assert ("--resume --retry-rejects" in got) == bool(stats["retryable_rejects"])
