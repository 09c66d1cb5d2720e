"""facecorpus: Apache Beam pipelines that turn face photos into image-text corpora."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facecorpus")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"
