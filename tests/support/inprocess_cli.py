"""Run the `facecorpus` entry point inside the test process (no interpreter start, no Beam re-import)."""

from __future__ import annotations

import sys

import pytest

from facecorpus.cli import main


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `facecorpus ARGS`, exactly as main() reports them."""
    monkeypatch.setattr(sys, "argv", ["facecorpus", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
