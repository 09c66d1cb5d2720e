"""Staging survives retried bundles (issue 14.7): a runner may run a bundle again after it failed, and the
retry must find everything the first attempt could read. Beam's BundleBasedDirectRunner retries a failed
bundle (up to 4 attempts, like Dataflow retries work items), so the test runs the real WriteShards there
with two DoFns that fail once: a staging bundle that fails after writing and closing its file (its
locators are thrown away, the retry writes a new file), and a shard writer that fails after reading its
samples from staging (the retry reads the same staging files again: nothing deleted them)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from facecorpus.sinks import shards
from tests.output.test_sink_and_templates import shard_sample


class _FailOnce:
    """The first attempt of the first bundle that gets here raises; a marker file remembers it (a retry
    may run on a fresh DoFn instance)."""

    marker: str

    def _fail_once(self, what: str) -> None:
        marker = Path(self.marker)
        if not marker.exists():
            marker.write_text(what)
            raise RuntimeError(f"injected failure in {what} (first attempt)")


class StageFailingOnce(_FailOnce, shards.StageSample):
    def __init__(self, out_dir: str) -> None:
        super().__init__(out_dir)
        self.marker = str(Path(out_dir) / "stage-failed")

    def finish_bundle(self) -> None:
        super().finish_bundle()  # the file is written and closed: a retry must not depend on it
        self._fail_once("StageSample.finish_bundle")


class WriterFailingOnce(_FailOnce, shards.WriteStagedBucket):
    def __init__(self, out_dir: str, max_shard_bytes: int, name_prefix: str = "shard") -> None:
        super().__init__(out_dir, max_shard_bytes, name_prefix)
        self.marker = str(Path(out_dir) / "writer-failed")

    def process(self, element):
        bucket, locators = element
        locators = list(locators)
        shards.load_staged(locators)  # the first attempt reads its samples from staging, then fails
        self._fail_once("WriteStagedBucket.process")
        yield from super().process((bucket, locators))


def _write(out: Path, samples: list) -> None:
    (out / "shards" / "_tmp").mkdir(parents=True)
    (out / "manifest").mkdir()
    with beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner"])) as p:
        _ = p | beam.Create(samples, reshuffle=False) | shards.WriteShards(str(out), 10, 10**9, staging=True)


def test_retried_staging_and_writer_bundles_write_every_sample_once(tmp_path: Path, monkeypatch):
    samples = [shard_sample(i) for i in range(25)]
    clean = tmp_path / "clean"
    _write(clean, samples)
    monkeypatch.setattr(shards, "StageSample", StageFailingOnce)
    monkeypatch.setattr(shards, "WriteStagedBucket", WriterFailingOnce)
    retried = tmp_path / "retried"
    _write(retried, samples)

    assert (retried / "stage-failed").exists() and (retried / "writer-failed").exists()  # both really failed once
    # the failed staging attempt left its own file behind; the shards only name the retry's
    assert len(list((retried / "shards" / "_tmp" / "staging").iterdir())) > len(
        list((clean / "shards" / "_tmp" / "staging").iterdir()))
    names = sorted(p.name for p in (clean / "shards").glob("*.tar"))
    assert len(names) == 3 and names == sorted(p.name for p in (retried / "shards").glob("*.tar"))
    for name in names:  # every sample once, byte for byte what the run without failures wrote
        assert (retried / "shards" / name).read_bytes() == (clean / "shards" / name).read_bytes(), name
    shards.remove_staging(str(retried))
    assert not (retried / "shards" / "_tmp" / "staging").exists()
