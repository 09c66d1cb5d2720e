"""Which Beam runner really runs a job, where its workers are, and what that allows.

Every decision that depends on the runner — staging files or the runner's shuffle, the embedded
local LLM server, a local response cache, local input paths — reads the **effective** pipeline
options: the recipe's `runner.runner` and `runner.options`, then the options given after `--` on the
command line (the last one wins, as in Beam itself). run.json records what actually ran.

"Workers local" means the SDK workers run on this machine and see its disk and loopback:
FnApiRunner / DirectRunner / PrismRunner; PortableRunner, FlinkRunner or SparkRunner whose job
service is on loopback (or embedded) and whose workers are LOOPBACK, PROCESS, or an EXTERNAL worker
pool on loopback; DaskRunner without a remote scheduler address (refused anyway: it reports no
Beam metrics, `refuse_uncountable`). Everything else (DataflowRunner,
DOCKER environments, a remote job service or worker pool) is remote: its workers cannot read a
launcher-local path, reach a server on 127.0.0.1, or share a folder on this disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions

from .errors import UserError

IN_PROCESS_RUNNERS = frozenset({"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner",
                                "PrismRunner", "TestDirectRunner"})
PORTABLE_RUNNERS = frozenset({"PortableRunner", "FlinkRunner", "SparkRunner"})
#: short names Beam does not know by itself (it wants the module path)
RUNNER_PATHS = {"daskrunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}
#: runners whose results report no Beam metrics (Beam 2.77's DaskRunnerResult.metrics() raises
#: NotImplementedError): `inputs` cannot be counted there, so `inputs == written + rejected` would prove
#: nothing. They are refused before anything is touched (`refuse_uncountable`).
NO_METRICS_RUNNERS = frozenset({"DaskRunner"})
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0")


def runner_name(runner: str | None) -> str:
    """The runner's class name ('DataflowRunner' from 'dataflow', a module path, or None = DirectRunner)."""
    if not runner:
        return "DirectRunner"
    name = runner.rsplit(".", 1)[-1]
    lowered = name.lower()
    for known in (*IN_PROCESS_RUNNERS, *PORTABLE_RUNNERS, *NO_METRICS_RUNNERS, "DataflowRunner"):
        if lowered in (known.lower(), known.lower().removesuffix("runner")):
            return known
    return name


def _on_loopback(address: str | None) -> bool:
    if not address:
        return False
    host = urlsplit(address if "://" in address else f"//{address}").hostname or address.split(":", 1)[0]
    return host in _LOOPBACK


@dataclass(frozen=True)
class Execution:
    """The effective runner of one job and what its workers can share with this launcher."""

    options: PipelineOptions
    runner: str
    workers_local: bool
    details: dict[str, Any]

    @property
    def worker_image(self) -> str | None:
        """The SDK container image the workers run, when the options name one."""
        opts = self.options.get_all_options(drop_default=True)
        image = opts.get("sdk_container_image")
        if not image and str(self.details.get("environment_type", "")).upper() == "DOCKER":
            image = opts.get("environment_config")
        return image or None

    def record(self) -> dict[str, Any]:
        """For run.json: the runner and where its workers ran (no credentials: options are not copied)."""
        return {"runner": self.runner, "workers_local": self.workers_local, **self.details}

    def local_path_error(self, key: str, path: str) -> UserError:
        """The one line for a launcher-local `path` under recipe `key` that remote workers cannot read."""
        return UserError(f"{key} is the local path {path}, which {self.runner} workers cannot read or write "
                         f"(they do not run on this machine); put it on gs:// or s3://")

    def require_shared(self, key: str, path: str | None) -> None:
        """Refuse a local `path` when the workers are remote."""
        if path and not self.workers_local and "://" not in path:
            raise self.local_path_error(key, path)


def execution_for(runner: str, recipe_options: list[str], extra_args: list[str]) -> Execution:
    """The effective options (recipe first, command line last) and what they mean for this job."""
    args = [f"--runner={runner}", *recipe_options, *extra_args]
    parsed = PipelineOptions(args)
    std = parsed.view_as(StandardOptions)
    name = runner_name(std.runner)
    path = RUNNER_PATHS.get(name.lower())
    if path and std.runner != path:
        args.append(f"--runner={path}")  # Beam knows the Dask runner by its module path only
        parsed = PipelineOptions(args)
    portable = parsed.view_as(PortableOptions)
    all_options = parsed.get_all_options(drop_default=True)
    details: dict[str, Any] = {}
    if name in IN_PROCESS_RUNNERS:
        mode = all_options.get("direct_running_mode")
        local = True
        if mode:
            details["direct_running_mode"] = mode
        if all_options.get("direct_num_workers"):
            details["direct_num_workers"] = all_options["direct_num_workers"]
    elif name in PORTABLE_RUNNERS:
        env = (portable.environment_type or "DOCKER").upper()
        endpoint = portable.job_endpoint
        details.update({"environment_type": env, "job_endpoint": endpoint or "embedded"})
        job_local = endpoint in (None, "embed") or _on_loopback(endpoint)
        if name == "FlinkRunner" and endpoint is None:
            master = all_options.get("flink_master", "[auto]")
            job_local = master in ("[auto]", "[local]") or _on_loopback(master)
        workers = env in ("LOOPBACK", "PROCESS") or (env == "EXTERNAL" and _on_loopback(portable.environment_config))
        if env == "EXTERNAL":
            details["environment_config"] = portable.environment_config
        local = job_local and workers
    elif name == "DaskRunner":
        address = all_options.get("dask_client_address")
        details["dask_client_address"] = address or "a local cluster"
        local = address is None or _on_loopback(address)
    else:
        local = False
    return Execution(options=parsed, runner=name, workers_local=local, details=details)


def refuse_uncountable(execution: Execution) -> None:
    """One UserError for a runner that reports no Beam metrics: facecorpus counts every input with a
    Beam counter and proves `inputs == written + rejected` with it; counting the outputs instead would
    make that check always pass."""
    if execution.runner in NO_METRICS_RUNNERS:
        raise UserError(f"runner {execution.runner} is not supported: it reports no Beam metrics, so the run's inputs "
                        f"cannot be counted and inputs == written + rejected cannot be proven; use FnApiRunner, "
                        f"PortableRunner, FlinkRunner or DataflowRunner")


def metrics_missing_error(runner: str, out: str) -> UserError:
    """The one line when a finished job's result reports no facecorpus counters although it wrote files."""
    return UserError(f"{runner} reported no Beam metrics for this job, so its inputs were not counted and "
                     f"inputs == written + rejected cannot be proven; its files are in {out}: run `facecorpus finalize "
                     f"{out} --inputs N` with the job's facecorpus/inputs counter")


#: recipe fields, per source, that name files the workers read
SOURCE_PATH_FIELDS = ("path", "images", "labels", "ids", "detections")


def check_shared_paths(recipe: Any, execution: Execution) -> None:
    """One UserError naming the first recipe key that remote workers could not use: a launcher-local
    path, or the embedded LLM server on this machine's loopback. Runs before anything is touched."""
    if execution.workers_local:
        return
    if recipe.generation.generator == "openai" and recipe.generation.openai.base_url == "local":
        raise UserError(f"generation.openai.base_url: local runs the LLM on this machine's loopback; "
                        f"{execution.runner} workers do not run here and cannot reach it")
    for i, source in enumerate(recipe.sources):
        for name in SOURCE_PATH_FIELDS:
            value = getattr(source, name, None)
            for j, path in enumerate(value if isinstance(value, list) else [value]):
                key = f"sources.{i}.{name}" + (f".{j}" if isinstance(value, list) else "")
                execution.require_shared(key, path)
    for j, path in enumerate(recipe.validation.holdout.lists):
        execution.require_shared(f"validation.holdout.lists.{j}", path)


def counter_of(result: Any, name: str) -> int | None:
    """A finished job's facecorpus counter `name` (0 when it never counted); None when the result
    reports no facecorpus counters at all (a runner without metrics, or a job that saw nothing)."""
    from apache_beam.metrics.metric import MetricsFilter

    from .stage import METRICS_NAMESPACE

    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics raises (Beam's DaskRunnerResult)
        return None
    if not found:
        return None
    return int(sum(c.committed if c.committed is not None else c.attempted
                   for c in found if c.key.metric.name == name))


def counted_inputs(result: Any, execution: Execution, out: str) -> int:
    """The job's `inputs` counter. No counters at all from an in-process runner means it saw nothing;
    from any other runner it is only believable when the output holds no files. Otherwise it is refused
    (one line, exit 2) — never replaced by a count of the outputs, which would make
    `inputs == written + rejected` hold by construction."""
    from .output.layout import manifest_files, reject_files

    inputs = counter_of(result, "inputs")
    if inputs is not None:
        return inputs
    try:
        result.metrics()
    except Exception:  # noqa: BLE001 - the runner has no metrics at all
        raise metrics_missing_error(execution.runner, out) from None
    if execution.runner not in IN_PROCESS_RUNNERS and (manifest_files(out) or reject_files(out)):
        raise metrics_missing_error(execution.runner, out)
    return 0
