"""Reading a facecorpus output for training: a streaming WebDataset pipeline and wids random access.

    from facecorpus.loader import make_dataset
    ds = make_dataset("gs://bucket/corpus", format="sharegpt", shuffle=1000, resampled=True)
    for image, conversation in ds: ...

`source` is an output folder (local, `gs://`, `s3://`; its `index.json` lists the shards) or shard URLs
(a list, or one brace pattern such as `shards/shard-{00000..00009}.tar`). `gs://` and `s3://` are
read through Beam FileSystems, as the pipeline wrote them, with the standard environment's
credentials (storage.py: `AWS_ENDPOINT_URL_S3`, AWS keys, Google application default credentials;
`pip install apache-beam[gcp]` / `[aws]`); `open_with="fsspec"` uses gcsfs / s3fs instead, and
`open_with="pipe"` streams `gsutil cat` / `aws s3 cp … -`, which needs no Python client library.

Splitting: without resampling, shards are divided between nodes (torch.distributed rank, or RANK and
WORLD_SIZE) and then between DataLoader workers, so each sample is read once per epoch. With
`resampled=True` every worker draws shards at random with replacement from its own seeded stream —
the usual multi-node setting where epochs are counted in samples (`.with_epoch(n)`).
"""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

from PIL import Image

from .errors import UserError
from .export.conversations import FORMATS, TURNS, conversation, grouped
from .output.layout import INDEX_FILE
from .records import QAPair

REMOTE_SCHEMES = ("gs", "s3", "gcs")
OUTPUT_FORMATS = (*FORMATS, "record")


# -- where the shards are ---------------------------------------------------------------------------
def _is_remote(url: str) -> bool:
    return urlparse(url).scheme in (*REMOTE_SCHEMES, "memory", "http", "https")


def _join(base: str, rel: str) -> str:
    if "://" in rel or rel.startswith("/"):
        return rel
    return base.rstrip("/") + "/" + rel


def _beam_scheme(url: str) -> bool:
    """gs:// and s3:// are read through Beam FileSystems, like the writer (one set of credentials)."""
    return urlparse(url).scheme in ("gs", "s3")


def _beam_open(url: str):  # noqa: ANN202 - a binary file object
    from apache_beam.io.filesystems import FileSystems

    from .storage import use_storage

    use_storage()
    return FileSystems.open(url)


def _read_bytes(url: str) -> bytes:
    if _beam_scheme(url):
        from apache_beam.io.filesystems import BeamIOError

        try:
            with _beam_open(url) as f:
                return f.read()
        except BeamIOError as e:
            raise FileNotFoundError(url) from e
    if _is_remote(url):
        import fsspec

        with fsspec.open(url, "rb") as f:
            return f.read()
    with open(url.removeprefix("file://"), "rb") as f:
        return f.read()


def read_index(source: str) -> dict[str, Any]:
    """The output's index.json (wids shard-index format), with shard urls made absolute."""
    path = _join(source, INDEX_FILE)
    try:
        index = json.loads(_read_bytes(path))
    except FileNotFoundError:
        raise UserError(f"{source} has no {INDEX_FILE}: is it a facecorpus output folder? (or pass shard URLs)") from None
    except ImportError as e:
        from .extras import SCHEME_EXTRA, missing_extra

        extra = SCHEME_EXTRA.get(source.split("://", 1)[0], ("gcp", ""))[0]
        raise missing_extra(extra, f"reading {source}", str(e)) from e
    for shard in index.get("shardlist", []):
        shard["url"] = _join(source, shard["url"])
    return index


def shard_urls(source: str | Sequence[str]) -> list[str]:
    """Shard URLs from an output folder, a brace pattern or a list."""
    if not isinstance(source, str):
        return list(source)
    if source.endswith(".tar") or "{" in source:
        from webdataset.shardlists import expand_urls

        return expand_urls(source)
    urls = [s["url"] for s in read_index(source)["shardlist"] if s.get("nsamples", 1) > 0]
    if not urls:
        raise UserError(f"{source} lists no shards with samples in {INDEX_FILE}")
    return urls


def pipe_command(url: str) -> str:
    """A `pipe:` URL that streams a gs:// or s3:// object with the cloud's command-line tool."""
    scheme = urlparse(url).scheme
    if scheme in ("gs", "gcs"):
        return f"pipe:gsutil cat {shlex.quote(url)}"
    if scheme == "s3":
        return f"pipe:aws s3 cp {shlex.quote(url)} -"
    raise ValueError(f"no pipe command for {url}")


def open_shard(url: str, open_with: str = "auto"):  # noqa: ANN201 - a binary file object
    """Open one shard for streaming: local files directly, gs:// and s3:// through Beam FileSystems (or
    fsspec / a pipe when asked), other remote URLs with fsspec."""
    if url.startswith("pipe:") or (open_with == "pipe" and _is_remote(url)):
        from webdataset.gopen import gopen

        return gopen(url if url.startswith("pipe:") else pipe_command(url), "rb")
    if _beam_scheme(url) and open_with == "auto":
        return _beam_open(url)
    if _is_remote(url):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb")


# -- pipeline stages ---------------------------------------------------------------------------------
def _opened(data: Iterable[dict[str, Any]], open_with: str, handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    for item in data:
        try:
            yield {**item, "stream": open_shard(item["url"], open_with)}
        except Exception as e:  # noqa: BLE001 - the handler decides: skip the shard or stop
            e.args = (*e.args, item["url"])
            if not handler(e):
                raise


def decode_record(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw WebDataset sample (bytes per extension) → key, decoded RGB PIL image, record dict."""
    image = Image.open(io.BytesIO(sample["jpg"]))
    image.load()
    return {"key": sample["__key__"], "image": image.convert("RGB") if image.mode != "RGB" else image,
            "record": json.loads(sample["json"]), "url": sample.get("__url__")}


def _to_pairs(data: Iterable[dict[str, Any]], fmt: str, turns: str, categories: frozenset[str]) -> Iterator[Any]:
    for s in data:
        if fmt == "record":
            yield s["image"], s["record"]
            continue
        qa = [QAPair.model_validate(q) for q in s["record"]["qa"] if not categories or q["category"] in categories]
        for group in grouped(qa, turns):
            yield s["image"], conversation(group, fmt)


def make_dataset(
    source: str | Sequence[str],
    *,
    format: str = "sharegpt",
    turns: str = "sample",
    categories: Iterable[str] = (),
    shuffle: int = 1000,
    shard_shuffle: int = 100,
    resampled: bool = False,
    seed: int = 0,
    split_by_node: bool = True,
    split_by_worker: bool = True,
    open_with: str = "auto",
    handler: Callable[[Exception], bool] | None = None,
):  # noqa: ANN201 - a webdataset.DataPipeline
    """A WebDataset pipeline yielding (PIL image, conversation) — or (image, record dict) with format='record'.

    shuffle: sample shuffle buffer size (0 = keep shard order); shard_shuffle: shard-order buffer;
    resampled: draw shards with replacement forever (set an epoch length with `.with_epoch(n)`);
    handler: what to do with a broken shard or sample (default: warn and continue).
    """
    import webdataset as wds
    from webdataset.tariterators import group_by_keys, tar_file_expander

    if format not in OUTPUT_FORMATS:
        raise UserError(f"unknown format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if turns not in TURNS:
        raise UserError(f"unknown turns {turns!r}; choose one of {', '.join(TURNS)}")
    if open_with not in ("auto", "fsspec", "pipe"):
        raise UserError(f"unknown open_with {open_with!r}; choose auto, fsspec or pipe")
    handler = handler or wds.warn_and_continue
    urls = shard_urls(source)
    stages: list[Any] = []
    if resampled:
        # every worker on every node gets its own deterministic stream of shards (seeded by rank, worker, seed)
        stages.append(wds.ResampledShards(urls, seed=seed, deterministic=True))
    else:
        stages.append(wds.SimpleShardList(urls))
        if split_by_node:
            stages.append(wds.split_by_node)
        if split_by_worker:
            stages.append(wds.split_by_worker)
        if shard_shuffle:
            stages.append(wds.detshuffle(shard_shuffle, seed=seed))
    stages += [
        wds.pipelinefilter(_opened)(open_with, handler),
        wds.pipelinefilter(tar_file_expander)(handler=handler),
        wds.pipelinefilter(group_by_keys)(handler=handler),
    ]
    if shuffle:
        stages.append(wds.shuffle(shuffle, initial=min(shuffle, 100), seed=seed))
    stages += [
        wds.map(decode_record, handler=handler),
        wds.pipelinefilter(_to_pairs)(format, turns, frozenset(categories)),
    ]
    return wds.DataPipeline(*stages)


def collate_pairs(batch: list[Any]) -> tuple[list[Any], list[Any]]:
    """DataLoader collate function: ([images], [conversations]) — PIL images and dicts do not stack."""
    images, convs = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(convs)


# -- random access ------------------------------------------------------------------------------------
class IndexedCorpus:
    """Random access to samples by index through the `wids` index (index.json), e.g. for a sampler.

    Local shards are memory-mapped where they are; remote shards are downloaded once (`_read_bytes`) into
    `cache_dir` (wids' own downloader would need gsutil / the aws CLI).
    """

    def __init__(self, source: str, *, format: str = "sharegpt", cache_dir: str | None = None, lru_size: int = 10) -> None:
        import os
        import tempfile

        from .extras import require

        require("torch", "train", "random access (IndexedCorpus, wids)")
        import wids

        if format not in OUTPUT_FORMATS:
            raise UserError(f"unknown format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        self.format = format
        index = read_index(source)
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "facecorpus-wids")
        os.makedirs(self.cache_dir, exist_ok=True)
        shards = [dict(s) for s in index["shardlist"] if s["nsamples"] > 0]
        # the cache name includes the size the index gives, so a rewritten output is fetched again
        self._sizes = {s["url"]: s.get("filesize") for s in shards}
        self._ds = wids.ShardListDataset(shards, localname=self._localname, lru_size=lru_size, transformations=[])

    def _localname(self, url: str) -> str:
        import hashlib
        import os

        if not _is_remote(url):
            return os.path.abspath(url.removeprefix("file://"))  # wids skips the copy when the names match
        tag = hashlib.sha256(f"{url}|{self._sizes.get(url)}".encode()).hexdigest()[:16]
        local = os.path.join(self.cache_dir, f"{tag}-{url.rsplit('/', 1)[-1]}")
        if not os.path.exists(local):
            tmp = f"{local}.{os.getpid()}.part"
            with open(tmp, "wb") as f:
                f.write(_read_bytes(url))
            os.replace(tmp, local)  # atomic, so a concurrent worker never maps a half-written shard
        return local

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, index: int) -> tuple[Image.Image, Any]:
        """(image, conversation of all the sample's QA pairs) — or (image, record) with format='record'."""
        raw = self._ds[index]  # wids gives members as BytesIO under '.ext' keys
        s = decode_record({"__key__": raw["__key__"], "jpg": raw[".jpg"].getvalue(), "json": raw[".json"].getvalue()})
        if self.format == "record":
            return s["image"], s["record"]
        qa = [QAPair.model_validate(q) for q in s["record"]["qa"]]
        return s["image"], conversation(qa, self.format)

    def key(self, index: int) -> str:
        return self._ds[index]["__key__"]


# -- whole-output reading (export, review) -------------------------------------------------------------
def iter_output_samples(
    out: str, keys: set[str] | None = None, shards: set[str] | None = None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for every sample of an output: output/readers.py's, kept here for callers
    of `facecorpus.loader` (the readers' home is the output package)."""
    from .output.readers import iter_output_samples as read

    return read(out, keys, shards)
