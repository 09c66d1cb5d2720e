"""The real runner decides: effective pipeline options (the command line after `--` wins over the
recipe), one-line refusals for what remote workers cannot use, run.json naming what ran — and the demo
recipe (portable faces, LLM text from a loopback OpenAI-compatible server) on Beam's PortableRunner
with an external SDK worker pool (the Fn API Dataflow Runner v2 speaks), compared with FnApiRunner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from facecorpus.execution import execution_for
from tests.support.helpers import REPO, run_cli, write_recipe
from tests.support.inprocess_cli import cli_in_process
from tests.support.llm_fault_server import FaultServer
from tests.validation.test_resume import EPOCH


def test_command_line_runner_wins_over_the_recipe():
    e = execution_for("FnApiRunner", ["--direct_num_workers=2"], ["--runner=DataflowRunner", "--project=p"])
    assert (e.runner, e.workers_local) == ("DataflowRunner", False)
    portable = ["--runner=PortableRunner", "--job_endpoint=localhost:8099"]
    assert not execution_for("FnApiRunner", [], portable).workers_local  # DOCKER workers: not this disk
    external = execution_for("FnApiRunner", [], [*portable, "--environment_type=EXTERNAL",
                                                 "--environment_config=127.0.0.1:50000"])
    assert external.workers_local and external.record()["environment_type"] == "EXTERNAL"
    assert not execution_for("FnApiRunner", [], [*portable, "--environment_type=EXTERNAL",
                                                 "--environment_config=10.0.0.7:50000"]).workers_local
    assert execution_for("DataflowRunner", [], ["--runner=FnApiRunner"]).workers_local


def test_a_local_path_with_a_remote_runner_is_one_line_naming_the_key(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "remote", "sources": [{"type": "folder", "path": "photos"}],
                                                "generation": {"generator": "templates"}})
    proc = cli_in_process("run", str(recipe), "--out", "gs://bucket/out", "--", "--runner=DataflowRunner", "--project=p",
                          "--region=europe-west4", "--temp_location=gs://bucket/tmp")
    assert proc.returncode == 2, proc.stderr
    assert "sources.0.path is the local path" in proc.stderr and "DataflowRunner workers cannot read" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_local_output_folder_with_a_remote_runner_is_one_line(tmp_path: Path, monkeypatch, capsys):
    from tests.support.inprocess_cli import run_main

    recipe = write_recipe(tmp_path / "r.yaml", {"name": "remote-out", "sources": [{"type": "folder", "path": "gs://b/photos"}],
                                                "generation": {"generator": "templates"}, "faces": {"backend": "none"}})
    code, _, err = run_main(["run", str(recipe), "--out", str(tmp_path / "out"), "--", "--runner=DataflowRunner",
                             "--project=p"], monkeypatch, capsys)
    assert code == 2 and "--out is the local path" in err and "DataflowRunner workers cannot read or write" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_local_llm_with_a_remote_runner_is_refused(tmp_path: Path):
    recipe = write_recipe(tmp_path / "r.yaml", {
        "name": "remote-llm", "sources": [{"type": "folder", "path": "gs://bucket/photos"}],
        "generation": {"generator": "openai", "openai": {"base_url": "local"}}})
    proc = cli_in_process("run", str(recipe), "--out", "gs://bucket/out", "--", "--runner=DataflowRunner")
    assert proc.returncode == 2 and "base_url: local" in proc.stderr and "DataflowRunner" in proc.stderr, proc.stderr


def test_a_runner_without_metrics_is_refused_before_anything_is_touched(tmp_path: Path, monkeypatch, capsys):
    """Beam's DaskRunner reports no metrics (its result's metrics() raises): the inputs could only be
    counted from the outputs, which proves nothing, so it is refused with one line, exit 2."""
    from tests.support.inprocess_cli import run_main

    (tmp_path / "photos").mkdir()
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "dask", "sources": [{"type": "folder", "path": "photos"}],
                                                "generation": {"generator": "templates"},
                                                "runner": {"runner": "DaskRunner"}})
    code, _, err = run_main(["run", str(recipe), "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 2 and "runner DaskRunner is not supported: it reports no Beam metrics" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


class _NoMetricsResult:
    """A finished job's result from a runner without metrics (what Beam 2.77's DaskRunnerResult does;
    Dask itself is not installed here)."""

    def metrics(self):
        raise NotImplementedError("collecting metrics will come later!")


class _EmptyMetricsResult:
    def metrics(self):
        class _Empty:
            def query(self, _filter):
                return {"counters": [], "distributions": [], "gauges": []}
        return _Empty()


def test_a_job_whose_metrics_come_back_empty_is_refused_not_counted_from_its_outputs(tmp_path: Path):
    from facecorpus.errors import UserError
    from facecorpus.execution import counted_inputs

    out = tmp_path / "out"
    (out / "rejects").mkdir(parents=True)
    (out / "rejects" / "rejects-00000-of-00001.jsonl").write_text('{"reason": "not_an_image"}\n')
    portable = execution_for("FnApiRunner", [], ["--runner=PortableRunner", "--job_endpoint=localhost:8099",
                                                 "--environment_type=EXTERNAL", "--environment_config=localhost:5"])
    for result, execution in ((_NoMetricsResult(), portable), (_NoMetricsResult(), execution_for("FnApiRunner", [], [])),
                              (_EmptyMetricsResult(), portable)):
        with pytest.raises(UserError, match="reported no Beam metrics") as e:
            counted_inputs(result, execution, str(out))
        assert f"facecorpus finalize {out} --inputs N" in str(e.value)
    # an in-process runner that counted nothing saw nothing; so did a job that wrote no file
    assert counted_inputs(_EmptyMetricsResult(), execution_for("FnApiRunner", [], []), str(out)) == 0
    assert counted_inputs(_EmptyMetricsResult(), portable, str(tmp_path / "empty")) == 0


def test_the_local_cache_follows_the_effective_runner_not_the_recipe(tmp_path: Path):
    from facecorpus.errors import UserError
    from facecorpus.generation.config import GenerationConfig
    from facecorpus.generation.preflight import resolve_cache_dir

    cfg = GenerationConfig.model_validate({"generator": "openai", "cache": {"dir": str(tmp_path / "cache")}})
    assert resolve_cache_dir(cfg, execution_for("FnApiRunner", [], [])) == str(tmp_path / "cache")
    with pytest.raises(UserError, match="generation.cache.dir is the local folder .* DataflowRunner workers cannot share"):
        resolve_cache_dir(cfg, execution_for("FnApiRunner", [], ["--runner=DataflowRunner", "--project=p"]))
    shared = GenerationConfig.model_validate({"generator": "openai", "cache": {"dir": "gs://b/cache"}})
    assert resolve_cache_dir(shared, execution_for("FnApiRunner", [], ["--runner=DataflowRunner"])) == "gs://b/cache"


def test_staging_follows_the_effective_runner_not_the_recipe():
    from facecorpus.graph import staging_for
    from facecorpus.recipe import Recipe

    recipe = Recipe.model_validate({"name": "s", "sources": [{"type": "folder", "path": "gs://b/photos"}]})
    assert recipe.output.grouping == "auto" and staging_for(recipe, execution_for("FnApiRunner", [], []))
    assert not staging_for(recipe, execution_for("FnApiRunner", [], ["--runner=DataflowRunner", "--project=p"]))


def test_flex_template_parameters_become_a_detached_run():
    from facecorpus.flex_template import command_line

    url, args = command_line(["--recipe=gs://b/r.yaml", "--out=gs://b/out", "--set=output.samples_per_shard=500",
                              "--runner=DataflowRunner", "--sdk_container_image=europe-docker.pkg.dev/p/r/fc:1"])
    assert url == "gs://b/r.yaml"
    assert args == ["--out", "gs://b/out", "--detach", "--set", "output.samples_per_shard=500", "--",
                    "--runner=DataflowRunner", "--sdk_container_image=europe-docker.pkg.dev/p/r/fc:1"]


def test_detach_needs_a_remote_runner(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    recipe = write_recipe(tmp_path / "r.yaml", {"name": "d", "sources": [{"type": "folder", "path": "photos"}],
                                                "generation": {"generator": "templates"}})
    proc = cli_in_process("run", str(recipe), "--out", str(tmp_path / "out"), "--detach")
    assert proc.returncode == 2 and "--detach needs a runner whose workers run elsewhere" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- PortableRunner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on {port} within {timeout}s")


def _samples(out: Path) -> dict[str, dict]:
    found = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    rec = json.loads(tar.extractfile(m).read())
                    found[rec["key"]] = rec
    return found


def _without_timings(rec: dict) -> dict:
    """A record without what legitimately differs between two runs: wall-clock latencies."""
    rec = json.loads(json.dumps(rec))
    rec.get("provenance", {}).get("usage", {}).pop("latency_s", None)
    return rec


@pytest.fixture(scope="module")
def demo_recipe(demo_inputs: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo recipe on freshly built demo inputs, its LLM pointed at a loopback OpenAI-compatible server."""
    from facecorpus.resources import data_dir

    root = tmp_path_factory.mktemp("runners")
    inputs = demo_inputs
    data = yaml.safe_load((data_dir("pipelines") / "demo.yaml").read_text())
    with FaultServer(model="fake-model") as llm:
        data["generation"]["openai"].update({"base_url": llm.base_url, "api_key_env": None, "model": "fake-model"})
        data["generation"]["cache"] = {"enabled": False}
        for src in data["sources"]:
            for k in ("images", "path"):
                if k in src:
                    src[k] = str(inputs / src[k])
            if "labels" in src:
                src["labels"] = [str(inputs / p) for p in src["labels"]]
        yield write_recipe(root / "demo.yaml", data), llm, root


def _env(face_models: dict[str, str]) -> dict[str, str]:
    # the worker pool starts its SDK workers as `python` from PATH: this interpreter's, with facecorpus
    return {**os.environ, **face_models, "SOURCE_DATE_EPOCH": EPOCH,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def fnapi_run(demo_recipe, face_models) -> Path:
    recipe, llm, root = demo_recipe
    ref = root / "fnapi"
    proc = run_cli("run", str(recipe), "--out", str(ref), env=_env(face_models))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ref


def test_demo_with_loopback_llm_on_fnapirunner(fnapi_run: Path, demo_recipe):
    _, llm, _ = demo_recipe
    stats = json.loads((fnapi_run / "stats.json").read_text())
    assert stats["written"] > 0 and stats["inputs_counted_by"] == "run" and stats["invariant_ok"]
    assert stats["by_generator"] == {"openai": stats["written"]} and llm.chat_requests()
    assert json.loads((fnapi_run / "run.json").read_text())["runner"] == "FnApiRunner"


@pytest.fixture(scope="module")
def portable_run(demo_recipe, face_models, fnapi_run: Path) -> Path:
    """The same recipe on PortableRunner: Beam's job service and an external SDK worker pool, each its own process."""
    recipe, llm, root = demo_recipe
    env = _env(face_models)
    before = len(llm.chat_requests())
    job_port, pool_port = _free_port(), _free_port()
    services = [
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                          "--port", str(job_port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                          "--service_port", str(pool_port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE),
    ]
    try:
        _wait_for_port(job_port, services[0], "the job service")
        _wait_for_port(pool_port, services[1], "the worker pool")
        out = root / "portable"
        proc = run_cli("run", str(recipe), "--out", str(out), "--", "--runner=PortableRunner",
                       f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
                       f"--environment_config=localhost:{pool_port}", env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
    finally:
        for s in services:
            s.kill()
            s.wait()
    assert len(llm.chat_requests()) > before  # the portable run asked the LLM itself (no shared cache)
    return out


def test_portable_runner_with_external_workers_writes_what_fnapirunner_writes(portable_run: Path, fnapi_run: Path):
    out, ref = portable_run, fnapi_run
    ref_samples, samples = _samples(ref), _samples(out)
    assert ref_samples and sorted(samples) == sorted(ref_samples)
    assert {k: _without_timings(v) for k, v in samples.items()} == {k: _without_timings(v) for k, v in ref_samples.items()}
    lines = sorted(x for f in (out / "rejects").glob("*.jsonl") for x in f.read_text().splitlines() if x.strip())
    ref_lines = sorted(x for f in (ref / "rejects").glob("*.jsonl") for x in f.read_text().splitlines() if x.strip())
    assert lines == ref_lines

    stats, ref_stats = json.loads((out / "stats.json").read_text()), json.loads((ref / "stats.json").read_text())
    for k in ("inputs", "written", "rejected", "by_reason"):
        assert stats[k] == ref_stats[k], k
    assert stats["inputs_counted_by"] == "run" and stats["invariant_ok"]  # Beam counters came back from the job service
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["runner"] == "PortableRunner"
    assert run_info["attempts"][-1]["runner"]["environment_type"] == "EXTERNAL"
    assert run_cli("validate", str(out)).returncode == 0
