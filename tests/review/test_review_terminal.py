"""The real `facecorpus review` command in a pseudo-terminal: sample, judge, quit, resume, summarise."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import REPO
from tests.support.inprocess_cli import cli_in_process

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


class Terminal:
    """A child process on a pty, 120x40, with the screen bytes it wrote so far."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the command
            os.environ.update(TERM="xterm-256color", COLUMNS="120", LINES="40", PYTHONWARNINGS="ignore")
            os.chdir(REPO)
            os.execv(sys.executable, [sys.executable, "-m", "facecorpus.cli", *args])
        self.screen = b""

    def read(self, seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:
                    return

    def wait_for(self, text: bytes, timeout: float = 120) -> None:
        end = time.time() + timeout
        while text not in self.screen and time.time() < end:
            self.read(0.3)
        assert text in self.screen, self.screen[-2000:]

    def press(self, key: bytes) -> None:
        os.write(self.fd, key)
        self.read(0.8)

    def exit_code(self, timeout: float = 60) -> int:
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.read(0.2)
        os.kill(self.pid, 9)
        raise AssertionError("the review command did not exit after q")


def test_review_end_to_end_in_a_terminal(demo_output: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(demo_output, out)
    term = Terminal("review", str(out), "--reviewer", "tty", "--sample", "3", "--seed", "2")
    term.wait_for(b"item 1/3")
    term.press(b"A")  # accept the first item
    term.wait_for(b"item 2/3")
    term.press(b"r")  # reject the first QA pair of the second
    term.press(b"q")
    assert term.exit_code() == 0
    events = [json.loads(line) for line in (out / "reviews" / "tty.jsonl").read_text().splitlines()]
    assert [(e["action"], e.get("target"), e.get("verdict")) for e in events] == [
        ("open", None, None), ("judge", "item", "accept"), ("judge", "qa:0", "reject")
    ]
    # reopened without options: the same queue, at the first item without a verdict
    again = Terminal("review", str(out), "--reviewer", "tty")
    again.wait_for(b"item 3/3")
    again.press(b"q")
    assert again.exit_code() == 0
    proc = cli_in_process("review", str(out), "--summary")
    assert proc.returncode == 0 and "reviewers: tty" in proc.stdout and "per category" in proc.stdout
