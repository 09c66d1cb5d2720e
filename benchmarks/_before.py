"""The "before" side of a before/after benchmark: the package as it was at an earlier commit, run
from a temporary git worktree with this virtualenv's dependencies (its `src/` goes first on PYTHONPATH,
ahead of the editable install)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A detached worktree of `rev` (its `src/` holds the old package); removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="facecorpus-before-"))
    tree = folder / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), rev], check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


def env_for(src: Path | None, **extra: str) -> dict[str, str]:
    """The environment that runs the package from `src` (None: the installed one)."""
    env = {**os.environ, **extra}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def describe(rev: str) -> str:
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s", rev], capture_output=True, text=True)
    return out.stdout.strip()[:90]
