"""Optional parts of facecorpus and the one line that says how to install a missing one.

Each extra of pyproject.toml is named here with what needs it, so an ImportError (or Beam's own
"Unable to get filesystem" error) becomes a UserError naming the pip command, never a traceback.
"""

from __future__ import annotations

import importlib.util

from .errors import UserError

#: extra → (what it is for, the command that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "gcp": ("gs:// paths and Dataflow", "pip install 'facecorpus[gcp]'"),
    "aws": ("s3:// paths", "pip install 'facecorpus[aws]'"),
    "train": ("torch (random access with wids, LAION-Face .pth files)",
              "pip install 'facecorpus[train]' (CPU build: add --extra-index-url https://download.pytorch.org/whl/cpu)"),
    "insightface": ("the insightface backend and the demo's sample photos",
                    "pip install 'facecorpus[insightface]' && pip install --no-deps insightface==2.1"),
}

#: a path scheme → the extra for it and a module Beam's filesystem for that scheme imports
SCHEME_EXTRA = {"gs": ("gcp", "google.cloud.storage"), "s3": ("aws", "boto3")}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def missing_extra(extra: str, what: str, detail: str = "") -> UserError:
    """The one-line error for a missing optional part: what needs it and the pip command."""
    purpose, command = EXTRAS[extra]
    why = f" ({detail})" if detail else ""
    return UserError(f"{what} needs the '{extra}' extra for {purpose}{why}: {command}")


def require(module: str, extra: str, what: str) -> None:
    """Raise the missing-extra error unless `module` can be imported."""
    if not installed(module):
        raise missing_extra(extra, what, f"no module '{module}'")


def remote_path_error(error: Exception) -> UserError | None:
    """An error about a gs:// or s3:// path while that scheme's extra is not installed → our one line.

    Beam reports the missing filesystem as "Unable to get filesystem" (gs://) or fails inside its S3
    client (s3:// without boto3); either way the error text names the path.
    """
    text = str(error)
    for scheme, (extra, module) in SCHEME_EXTRA.items():
        at = text.find(f"{scheme}://")
        if at >= 0 and not installed(module):
            path = text[at:].split()[0].strip("'\",:;)}]")
            return missing_extra(extra, path)
    return None
