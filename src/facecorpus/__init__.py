"""facecorpus: Apache Beam pipelines that turn face photos into image-text corpora."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # `__version__` is looked up on first use: importlib.metadata costs a tenth of a second at start-up,
    # which every command (even --help) would otherwise pay
    if name != "__version__":
        raise AttributeError(f"module 'facecorpus' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("facecorpus")
    except PackageNotFoundError:  # running from a source tree without install
        found = "0.0.0+src"
    globals()["__version__"] = found
    return found
