"""The training loader: the demo output streamed through a plain loop, a torch DataLoader, and wids."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from PIL import Image

from facecorpus.errors import UserError
from facecorpus.loader import IndexedCorpus, collate_pairs, make_dataset, pipe_command, shard_urls
from facecorpus.review.queue import sample_candidates


def keys_of(pairs) -> list[str]:  # noqa: ANN001 - (image, record) pairs
    return [rec["key"] for _, rec in pairs]


@pytest.fixture(scope="module")
def all_keys(demo_output: Path) -> set[str]:
    return {c.id for c in sample_candidates(str(demo_output))}


def test_plain_loop_yields_every_sample_once(demo_output: Path, all_keys: set[str]) -> None:
    pairs = list(make_dataset(str(demo_output), format="record", shuffle=0, shard_shuffle=0))
    assert sorted(keys_of(pairs)) == sorted(all_keys)
    for image, rec in pairs:
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.size == (rec["image"]["width"], rec["image"]["height"])


def test_conversations_in_each_format(demo_output: Path) -> None:
    n_qa = sum(len(c.fields["categories"]) for c in sample_candidates(str(demo_output)))
    sharegpt = list(make_dataset(str(demo_output), shuffle=0))
    for _, conv in sharegpt:
        assert conv[0]["from"] == "human" and conv[0]["value"].startswith("<image>")
        assert [t["from"] for t in conv] == ["human", "assistant"] * (len(conv) // 2)
    assert sum(len(c) // 2 for _, c in sharegpt) == n_qa
    per_qa = list(make_dataset(str(demo_output), format="llava", turns="qa", shuffle=0))
    assert len(per_qa) == n_qa and all(c[0]["value"].startswith("<image>\n") and c[1]["from"] == "gpt" for _, c in per_qa)
    msgs = list(make_dataset(str(demo_output), format="messages", categories=["demographics"], shuffle=0))
    assert msgs and all(len(c) == 2 and c[0]["content"][0] == {"type": "image"} for _, c in msgs)


def test_shuffle_is_seeded(demo_output: Path) -> None:
    def order(seed: int) -> list[str]:
        return keys_of(make_dataset(str(demo_output), format="record", shuffle=16, seed=seed))

    assert order(1) == order(1)
    assert order(1) != order(2) or order(1) != order(3)
    plain = keys_of(make_dataset(str(demo_output), format="record", shuffle=0, shard_shuffle=0))
    assert sorted(order(1)) == sorted(plain)


def test_resampled_stream_is_endless_and_draws_from_all_shards(demo_output: Path, all_keys: set[str]) -> None:
    ds = make_dataset(str(demo_output), format="record", resampled=True, shuffle=8).with_epoch(64)
    seen = keys_of(ds)
    assert len(seen) == 64 and set(seen) <= all_keys and len(set(seen)) > 8


def test_node_splitting_divides_shards(demo_output: Path, all_keys: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        parts.append(set(keys_of(make_dataset(str(demo_output), format="record", shuffle=0))))
    assert parts[0] and parts[1] and not parts[0] & parts[1] and parts[0] | parts[1] == all_keys


def test_torch_dataloader_with_two_workers(demo_output: Path, all_keys: set[str]) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    ds = make_dataset(str(demo_output), format="sharegpt", shuffle=4)
    loader = torch_data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_pairs)
    images, convs = [], []
    for batch_images, batch_convs in loader:
        images += batch_images
        convs += batch_convs
    assert len(images) == len(all_keys)  # each of the 2 shards went to one worker, each sample once
    assert all(isinstance(i, Image.Image) for i in images) and all(c[0]["from"] == "human" for c in convs)
    records = list(torch_data.DataLoader(make_dataset(str(demo_output), format="record", shuffle=0), batch_size=None,
                                         num_workers=2, collate_fn=lambda x: x))
    assert sorted(keys_of(records)) == sorted(all_keys)


def test_wids_random_access(demo_output: Path, all_keys: set[str]) -> None:
    corpus = IndexedCorpus(str(demo_output), format="record")
    assert len(corpus) == len(all_keys)
    got = {corpus[i][1]["key"] for i in range(len(corpus))}
    assert got == all_keys
    image, rec = corpus[len(corpus) - 1]
    assert image.size == (rec["image"]["width"], rec["image"]["height"]) and corpus.key(len(corpus) - 1) == rec["key"]
    image, conv = IndexedCorpus(str(demo_output), format="llava")[0]
    assert conv[0]["value"].startswith("<image>\n")


def test_remote_shards_through_fsspec(demo_output: Path, all_keys: set[str], tmp_path: Path) -> None:
    """An output on an fsspec filesystem (in-memory here; gcsfs/s3fs take the same path for gs:// and s3://)."""
    mem = fsspec.filesystem("memory")
    mem.put(str(demo_output / "index.json"), "/corpus/index.json")
    for tar in sorted((demo_output / "shards").glob("*.tar")):
        mem.put(str(tar), f"/corpus/shards/{tar.name}")
    try:
        assert shard_urls("memory://corpus")[0].startswith("memory://corpus/shards/")
        pairs = list(make_dataset("memory://corpus", format="record", shuffle=0))
        assert sorted(keys_of(pairs)) == sorted(all_keys)
        corpus = IndexedCorpus("memory://corpus", format="record", cache_dir=str(tmp_path / "cache"))
        assert {corpus[i][1]["key"] for i in range(len(corpus))} == all_keys
        assert len(list((tmp_path / "cache").glob("*.tar"))) == len(corpus._sizes)  # each shard fetched once
    finally:
        mem.rm("/corpus", recursive=True)


def test_pipe_urls_and_brace_patterns(demo_output: Path, all_keys: set[str]) -> None:
    assert pipe_command("gs://b/c/shard-00000.tar") == "pipe:gsutil cat gs://b/c/shard-00000.tar"
    assert pipe_command("s3://b/shard 1.tar") == "pipe:aws s3 cp 's3://b/shard 1.tar' -"
    tars = sorted((demo_output / "shards").glob("*.tar"))
    assert len(tars) >= 2
    pattern = str(demo_output / "shards" / f"shard-{{00000..{len(tars) - 1:05d}}}.tar")
    assert shard_urls(pattern) == [str(t) for t in tars]
    assert shard_urls(str(demo_output / "shards" / "shard-{00000..00001}.tar")) == [str(t) for t in tars[:2]]
    piped = [f"pipe:cat {t}" for t in tars]
    assert sorted(keys_of(make_dataset(piped, format="record", shuffle=0))) == sorted(all_keys)


def test_broken_shard_is_skipped_with_a_warning(demo_output: Path, tmp_path: Path) -> None:
    good = sorted((demo_output / "shards").glob("*.tar"))
    bad = tmp_path / "broken.tar"
    bad.write_bytes(good[0].read_bytes()[:5000])  # truncated mid-member
    with pytest.warns(UserWarning):
        pairs = list(make_dataset([str(bad), str(good[1])], format="record", shuffle=0))
    n_good = json.loads((demo_output / "index.json").read_text())["shardlist"][1]["nsamples"]
    assert len(pairs) >= n_good


def test_bad_sources_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has no index.json"):
        make_dataset(str(tmp_path))
    with pytest.raises(UserError, match="unknown format"):
        make_dataset(str(tmp_path), format="alpaca")


def test_example_training_script_runs(demo_output: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "train_example.py"
    proc = subprocess.run([sys.executable, str(script), str(demo_output), "--steps", "3", "--batch-size", "4", "--workers", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step    1  loss" in proc.stdout
