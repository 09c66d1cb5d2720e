"""Errors a user can cause: the CLI prints them as one line and exits non-zero, without a traceback."""

import errno


class UserError(Exception):
    """A mistake in input, configuration or environment that the user can fix; the message says how."""

    exit_code = 2


class MissingModelPack(UserError):
    """A stage needs a model pack that is not in the store."""

    def __init__(self, pack: str, store: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"model pack '{pack}' is not in the model store {store}{extra}; run: facecorpus models pull {pack}"
        )
        self.pack = pack


#: errno values that mean the machine refused a file operation for a reason the user can fix (a full
#: disk, a read-only or forbidden folder, a file where a folder belongs), not a bug in facecorpus
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EISDIR", "ENOTDIR",
                                      "ENAMETOOLONG")
    if hasattr(errno, name)
)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it was raised from or during, including the per-path errors Beam's
    filesystem errors carry (Beam re-raises a worker's OSError as a RuntimeError whose context it is)."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        stack += [x for x in (e.__cause__, e.__context__) if x is not None]
        details = getattr(e, "exception_details", None)
        if isinstance(details, dict):
            stack += [v for v in details.values() if isinstance(v, BaseException)]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return seen


def environment_error(exc: BaseException) -> OSError | None:
    """The OSError with an ENVIRONMENT_ERRNOS errno behind `exc`, if there is one."""
    return next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS), None)


def user_error(exc: BaseException) -> UserError | None:
    """The UserError behind `exc` (a stage raised it inside the runner), if there is one."""
    return next((e for e in _chain(exc) if isinstance(e, UserError)), None)
