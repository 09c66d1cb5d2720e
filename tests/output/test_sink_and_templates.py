"""The shard writer's guarantees and the templates generator's behaviour."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from facecorpus.generation.templates import generate_from_templates
from facecorpus.records import AttributeValue, Expression, Face, FaceBox, ImageInfo, Pose, SourceInfo
from facecorpus.sinks.shards import PackedSample, bucket_of, split_by_bytes, tar_bytes_for
from facecorpus.stage import WorkItem
from facecorpus.storage import write_atomically
from tests.support.helpers import REPO, run_cli


def test_tar_bytes_are_reproducible_and_readable():
    members = [("k1.jpg", b"\xff\xd8" * 10), ("k1.json", b"{}"), ("k1.txt", b"hi")]
    a, b = tar_bytes_for(members), tar_bytes_for(members)
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        assert [m.name for m in tar] == ["k1.jpg", "k1.json", "k1.txt"]
        assert all(m.mtime == 0 and m.uname == "" for m in tar.getmembers())



def test_tar_bytes_are_the_bytes_tarfile_writes():
    """The header template gives tarfile's own bytes: member sizes around block edges, an empty member,
    a 100-byte name; a long or non-ASCII name goes through tarfile itself."""
    from facecorpus.sinks.shards import tar_bytes_with_tarfile

    cases = [[(f"key{n}.jpg", b"\xab" * n), (f"key{n}.json", b"{}")] for n in (0, 1, 511, 512, 513, 10_239, 10_240)]
    cases += [[("k" * 100, b"x")], [("k" * 101, b"x")], [("clé.txt", b"x")], []]
    for members in cases:
        assert tar_bytes_for(members) == tar_bytes_with_tarfile(members)


def test_buckets_are_stable():
    assert bucket_of("fairface_val_1_ef28f837", 7) == bucket_of("fairface_val_1_ef28f837", 7)
    assert len({bucket_of(f"k{i}", 4) for i in range(100)}) == 4


def test_split_by_bytes_respects_the_cap():
    packed = [PackedSample(key=f"k{i}", members=[(f"k{i}.jpg", b"x" * 3000)], row={}) for i in range(10)]
    groups = split_by_bytes(packed, max_bytes=10_000)
    assert sum(len(g) for g in groups) == 10
    assert all(1024 + sum(512 + 3072 for _ in g) <= 10_000 for g in groups)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path):
    tmp = tmp_path / "_tmp"
    tmp.mkdir()
    final = tmp_path / "a.tar"
    write_atomically(str(final), b"one", str(tmp))
    write_atomically(str(final), b"two", str(tmp))
    assert final.read_bytes() == b"two" and not list(tmp.iterdir())


def test_same_inputs_give_byte_identical_shards(tmp_path: Path, demo_inputs: Path, face_models: dict[str, str]):
    # the demo recipe with the templates generator: the local LLM's text is not promised to be
    # byte-stable across runs, the face models and the sink are
    env = {"SOURCE_DATE_EPOCH": "1700000000", **face_models}
    recipe = REPO / "pipelines" / "demo.yaml"
    ff = demo_inputs / "fairface"
    sets = ["--set", "generation.generator=templates", "--set", f"sources.0.images={ff / 'fairface-img-margin025-trainval.zip'}",
            "--set", f"sources.0.labels=[{ff / 'fairface_label_val.csv'}]", "--set", f"sources.1.path={demo_inputs / 'photos'}"]
    outs = []
    # same inputs twice, once through each grouping mode: the shards must not differ by a byte
    for name, grouping in (("a", "staging"), ("b", "shuffle")):
        proc = run_cli("run", str(recipe), "--out", str(tmp_path / name), *sets, "--set", f"output.grouping={grouping}", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / name / "shards").glob("*.tar")})
    assert outs[0] == outs[1] and outs[0]


def _item(key: str, labels: dict | None = None, face: Face | None = None) -> WorkItem:
    it = WorkItem(key=key, source=SourceInfo(dataset="t", id=key))
    it.image = ImageInfo(width=200, height=240, sha256="0" * 64, phash="0" * 16, bytes=1)
    it.pixels = np.full((240, 200, 3), 128, dtype=np.uint8)
    it.labels = {k: AttributeValue(value=v, source="label", confidence=1.0) for k, v in (labels or {}).items()}
    if face is not None:
        it.faces, it.primary_face = [face], 0
    return it


CATS = ["demographics", "facial_structure", "skin_texture", "expression", "lighting_quality", "pose", "forensic", "detail"]


def test_templates_speak_only_from_known_facts():
    caption, qa, skipped = generate_from_templates(_item("a"), CATS, seed=0)
    cats = [q.category for q in qa]
    # without labels or a detected face there is nothing to say about demographics, structure, expression, pose
    assert set(skipped) == {"demographics", "facial_structure", "expression", "pose"}
    assert set(cats) == {"skin_texture", "lighting_quality", "forensic", "detail"}
    assert "200x240" in " ".join(q.answer for q in qa)
    assert caption.startswith("A photo of a person")


def test_templates_use_labels_and_face_facts():
    face = Face(box=FaceBox(x1=40, y1=40, x2=160, y2=200), score=0.99, detector="test",
                landmarks5=[(70, 100), (130, 100), (100, 130), (75, 165), (125, 165)],
                pose=Pose(yaw=30, pitch=-2, roll=1), expression=Expression(label="happy", confidence=0.9))
    caption, qa, skipped = generate_from_templates(
        _item("b", {"gender": "female", "age": "3-9", "race": "latino_hispanic"}, face), CATS, seed=0)
    assert skipped == []
    text = {q.category: q.answer for q in qa}
    assert "girl" in text["demographics"] or "female" in text["demographics"]
    assert "happy" in text["expression"]
    assert "30 degrees" in text["pose"]
    assert "Latino or Hispanic" in caption


@pytest.mark.parametrize("seed", [0, 1])
def test_templates_are_deterministic_and_vary_across_keys(seed):
    a1 = generate_from_templates(_item("k-1", {"gender": "male", "age": "20-29", "race": "black"}), CATS, seed)
    a2 = generate_from_templates(_item("k-1", {"gender": "male", "age": "20-29", "race": "black"}), CATS, seed)
    assert a1 == a2
    questions = {q.question for i in range(20)
                 for q in generate_from_templates(_item(f"k{i}", {"gender": "male"}), ["demographics"], seed)[1]}
    assert len(questions) > 1


def shard_sample(i: int):
    """A small valid ShardSample numbered `i` (key k000…), its JPEG a few fake bytes (the sink does not decode it)."""
    from datetime import UTC, datetime

    from facecorpus.records import Provenance, QAPair, Sample
    from facecorpus.stage import ShardSample

    s = Sample(key=f"k{i:03d}", source=SourceInfo(dataset="t", id=str(i)),
               image=ImageInfo(width=8, height=8, sha256="0" * 64, phash="0" * 16, bytes=3), caption=f"photo {i}",
               qa=[QAPair(category="detail", question="What?", answer=f"An image numbered {i}.")],
               provenance=Provenance(generator="templates", prompt_set="templates", prompt_version="1",
                                     prompt_sha256="0" * 64, pipeline_version="t", recipe="t", recipe_sha256="0" * 64,
                                     created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    return ShardSample(sample=s, jpeg=b"\xff\xd8jpeg" + bytes([i]))


def test_staged_path_writes_the_same_shards_from_one_file_per_bundle(tmp_path: Path):
    from facecorpus.sinks.shards import (
        StageSample,
        WriteShardBucket,
        WriteStagedBucket,
        remove_staging,
    )

    samples = [shard_sample(i) for i in range(30)]
    staged, direct = tmp_path / "staged", tmp_path / "direct"
    for out in (staged, direct):
        (out / "shards" / "_tmp").mkdir(parents=True)
        (out / "manifest").mkdir()
    locators = []
    for bundle in (samples[:20], samples[20:]):  # two bundles: two staging files, whatever the count of samples
        stage = StageSample(str(staged))
        stage.start_bundle()
        locators += [loc for s in bundle for loc in stage.process(s)]
        stage.finish_bundle()
    files = sorted((staged / "shards" / "_tmp" / "staging").iterdir())
    assert len(files) == 2 and {loc.path.rsplit("/", 1)[-1] for loc in locators} == {f.name for f in files}
    rev = list(reversed(locators))  # a grouping hands locators over in any order
    assert list(WriteStagedBucket(str(staged), 10**9).process((0, rev))) == list(
        WriteShardBucket(str(direct), 10**9).process((0, list(reversed(samples)))))
    assert (staged / "shards" / "shard-00000.tar").read_bytes() == (direct / "shards" / "shard-00000.tar").read_bytes()
    assert (staged / "manifest" / "shard-00000.parquet").read_bytes() == (direct / "manifest" / "shard-00000.parquet").read_bytes()
    assert len(files) == len(list((staged / "shards" / "_tmp" / "staging").iterdir()))  # writing deletes nothing
    remove_staging(str(staged))
    assert not (staged / "shards" / "_tmp").exists()  # the staging files and the folder they left empty
    remove_staging(str(staged))  # nothing left to remove is fine


def test_only_locators_wait_on_the_count_and_both_groupings_write_the_same_shards(tmp_path: Path):
    """Issue 14.7: the step that reads the count side input gets small `Staged` locators in both modes
    (found in the graph, then their pickled sizes measured in the run), while the samples before it
    carry their 20 KB JPEGs; the shuffle path (fine buckets, part files) writes the shards and manifests
    that the staging path writes, byte for byte, each sample once."""
    import pickle

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.pipeline import PipelineVisitor
    from apache_beam.testing.util import assert_that

    from facecorpus.sinks.shards import StageSample, WritePart, WriteShards
    from facecorpus.stage import ShardSample

    class SideInputSteps(PipelineVisitor):
        def __init__(self) -> None:
            self.found: list = []

        def visit_transform(self, node) -> None:
            if node.side_inputs and "/Count/" not in node.full_label:  # not Count's own default step
                self.found.append(node)

    def sizes_at_most(limit: int, n: int, at_least: int = 0):
        def check(sizes: list[int]) -> None:
            assert len(sizes) == n and all(at_least <= x <= limit for x in sizes), (n, sorted(sizes)[:3], sorted(sizes)[-3:])
        return check

    samples = [ShardSample(sample=s.sample, jpeg=s.jpeg + bytes(20_000)) for s in map(shard_sample, range(25))]
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))  # one run, both sinks: the cheapest proof
    given = p | beam.Create(samples, reshuffle=False)
    modes = {"staging": True, "shuffle": False}
    for name, staging in modes.items():
        out = tmp_path / name
        (out / "shards" / "_tmp").mkdir(parents=True)
        (out / "manifest").mkdir()
        _ = given | name >> WriteShards(str(out), 10, 10**9, staging=staging)
    visitor = SideInputSteps()
    p.visit(visitor)
    assert sorted(n.full_label for n in visitor.found) == ["shuffle/Bucket", "staging/Bucket"], visitor.found
    for node in visitor.found:
        name = node.full_label.split("/")[0]
        (side,) = node.side_inputs
        assert side.pvalue.producer.full_label.startswith(f"{name}/Count/")  # the step that reads the global count
        (main,) = node.main_inputs.values()
        assert isinstance(main.producer.transform.fn, StageSample if modes[name] else WritePart)  # locators only
        assert_that(main | f"{name}LocatorSize" >> beam.Map(lambda x: len(pickle.dumps(x))), sizes_at_most(1_000, 25),
                    label=f"{name}LocatorsAreSmall")
    assert_that(given | "SampleSize" >> beam.Map(lambda x: len(pickle.dumps(x))), sizes_at_most(10**6, 25, 20_000),
                label="SamplesCarryJpegs")  # the measure tells the two apart
    p.run().wait_until_finish()
    a, b = tmp_path / "staging", tmp_path / "shuffle"
    names = sorted(f.relative_to(a).as_posix() for f in [*(a / "shards").glob("*.tar"), *(a / "manifest").glob("*.parquet")])
    assert len(names) == 6 and names == sorted(
        f.relative_to(b).as_posix() for f in [*(b / "shards").glob("*.tar"), *(b / "manifest").glob("*.parquet")])
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    keys = []
    for tar in sorted((b / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            keys += [m.name.split(".", 1)[0] for m in t.getmembers() if m.name.endswith(".jpg")]
    assert sorted(keys) == [s.key for s in samples]  # each sample exactly once
    assert {f.name.split("-")[0] for f in (b / "shards" / "_tmp" / "staging").iterdir()} == {"part"}


def test_a_part_file_holds_each_shard_bucket_as_one_run(tmp_path: Path):
    """WritePart orders a fine bucket by key hash, and buckets are hash ranges: whatever the shard count,
    a shard's samples in one part are adjacent, and load_staged reads them back in one read per run."""
    from facecorpus.sinks.shards import WritePart, load_staged

    samples = [shard_sample(i) for i in range(40)]
    locators = list(WritePart(str(tmp_path)).process((0, reversed(samples))))  # any order in
    assert len({loc.path for loc in locators}) == 1 and sorted(loc.key for loc in locators) == [s.key for s in samples]
    for n in (2, 3, 7):
        by_bucket: dict[int, list] = {}
        for loc in locators:
            by_bucket.setdefault(bucket_of(loc.key, n), []).append(loc)
        assert len(by_bucket) == n
        for locs in by_bucket.values():
            ends = [(loc.offset, loc.offset + loc.length) for loc in sorted(locs, key=lambda x: x.offset)]
            assert all(a[1] == b[0] for a, b in zip(ends, ends[1:], strict=False)), ends  # one run
            assert sorted(p.key for p in load_staged(list(reversed(locs)))) == sorted(loc.key for loc in locs)
