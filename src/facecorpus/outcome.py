"""How a run ends, told truthfully: its exit code and, when it did not succeed, one line saying why.

Exit codes of `facecorpus run` and `facecorpus demo`:

- 0: the run finished and wrote samples; at most `runner.max_retryable_rejects` of its inputs ended as
  infrastructure rejects (`infrastructure_rejects`: retryable LLM, read, download and model errors,
  and every LLM endpoint failure).
- 1: the run finished but is not a success: it wrote nothing (no inputs, or every input rejected), or
  more of its inputs than that share were lost to infrastructure failures, or (rewrite prompt sets)
  more than that share of its LLM rewrite requests were lost to the endpoint (`llm.rewrite.lost` in
  stats.json), although its samples were written with their template texts. The output stays as it
  is (valid, resumable); the line names what happened, how many, and the command that retries — for
  lost rewrites that is running again from scratch (`rerun_command`), since those samples were
  written: the response cache keeps every answer that came, so only the lost requests are sent again.
- 2: a mistake or an environment problem the user fixes (bad recipe or input file, a full or
  read-only disk, a failed pre-flight); one line, and nothing is left behind that blocks a re-run.
- 130: interrupted (Ctrl-C or SIGINT, also while a stage waits on a stalled LLM): one line naming the
  `--resume` command that continues; the output is left as the attempt found it, resumable.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

EXIT_RUN_FAILED = 1
EXIT_USER_ERROR = 2


def _reasons(by_reason: dict[str, int], limit: int = 4) -> str:
    top = sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v}" for k, v in top[:limit])
    return shown + (f", {len(top) - limit} more reasons" if len(top) > limit else "")


#: reject reasons that are an endpoint's failure, not the input's, even when not retryable (HTTP 401)
ENDPOINT_FAILURES = ("llm_error",)


def infrastructure_rejects(stats: dict[str, Any]) -> dict[str, int]:
    """Rejects by reason that say the machinery failed, not the input: every retryable reject (LLM,
    read, download, model errors) and every LLM endpoint failure."""
    infra = dict(stats.get("retryable_by_reason") or {})
    by_reason = stats.get("by_reason") or {}
    for reason in ENDPOINT_FAILURES:
        if by_reason.get(reason):
            infra[reason] = by_reason[reason]
    return {k: v for k, v in infra.items() if v}


def run_failure(stats: dict[str, Any], max_infra: float, retry_command: str, rerun_command: str | None = None) -> str | None:
    """Why a finished run is not a success (the one line for stderr), or None when it is one.

    `stats` is stats.json's content; `max_infra` the share of inputs (and of rewrite requests) that
    may be infrastructure failures; `retry_command` the command that resumes the run retrying its
    retryable rejects; `rerun_command` how to run it again from scratch (for lost rewrites).
    """
    inputs, written = int(stats.get("inputs") or 0), int(stats.get("written") or 0)
    retryable = int(stats.get("retryable_rejects") or 0)
    infra = infrastructure_rejects(stats)
    n_infra = sum(infra.values())
    if retryable:
        retry = f"; after fixing the cause, retry them with: {retry_command}"
        if n_infra > retryable:
            retry += f" (it retries the {retryable} retryable ones; the other {n_infra - retryable} need a new --out)"
    elif n_infra:
        retry = "; they are not retryable (e.g. a refused API key): after fixing the cause, run again into a new --out"
    else:
        retry = ""
    if inputs == 0:
        return "nothing written: the sources gave no inputs (empty label files, folders or lists?)"
    if n_infra > max_infra * inputs:
        return (f"{n_infra} of {inputs} inputs failed for infrastructure reasons ({_reasons(infra)}), more than "
                f"runner.max_retryable_rejects ({max_infra:g} of the inputs); {written} written{retry}")
    if written == 0:
        return f"nothing written: all {inputs} inputs were rejected ({_reasons(stats.get('by_reason') or {})}){retry}"
    rewrite = (stats.get("llm") or {}).get("rewrite") or {}
    lost, sent = int(rewrite.get("lost") or 0), int(rewrite.get("requests") or 0)
    if sent and lost > max_infra * sent:
        again = f": {rerun_command}" if rerun_command else " into a new --out"
        return (f"{lost} of {sent} LLM rewrite requests failed ({_reasons(rewrite.get('lost_by') or {})}), more than "
                f"runner.max_retryable_rejects ({max_infra:g} of them); {written} written, those texts kept from the "
                f"templates (flagged template_fallback); after fixing the endpoint, run again from scratch (cached "
                f"answers are not asked for again){again}")
    return None


def _mount_point(path: Path) -> Path:
    p = path.resolve()
    while not p.exists() or not os.path.ismount(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def explain_environment_error(err: OSError, out: str | None, resume_command: str | None) -> str:
    """One line for an OSError the user fixes: which path, what is wrong, what to do, and (for a full
    disk) how much is free, what the output already holds, and that `--resume` continues."""
    path = err.filename or out or "?"
    what = os.strerror(err.errno) if err.errno else str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        kind = {errno.ENOSPC: "the disk filled up", errno.EDQUOT: "the disk quota ran out",
                errno.EFBIG: "the file size limit (ulimit -f) was reached"}[err.errno]
        target = err.filename or (f"into {out}" if out else "?")
        where = ""
        if "://" not in str(err.filename or out or ""):
            mount = _mount_point(Path(str(err.filename or out or ".")))
            try:
                usage = shutil.disk_usage(mount)
                where = f" on {mount} (now {_size(usage.free)} free of {_size(usage.total)}, this run's partial files removed)"
            except OSError:
                where = f" on {mount}"
        held = ""
        if out and "://" not in out and Path(out).is_dir() and (size := _tree_bytes(Path(out))):
            held = f"; the output keeps the {_size(size)} it finished"
        cont = f", then continue with: {resume_command}" if resume_command else ""
        return f"{kind}{where} while writing {target}{held}: free space there or choose an --out on a larger disk{cont}"
    if err.errno == errno.EROFS:
        return f"cannot write {path}: read-only file system; choose an --out on a writable disk"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied; choose an --out you may write to, or fix its permissions"
    if err.errno == errno.EISDIR:
        return f"{path} is a folder where a file is expected"
    if err.errno == errno.ENOTDIR:
        return f"{path}: a part of this path is a file where a folder is expected"
    return f"{path}: {what}"
