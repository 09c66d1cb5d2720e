"""Why an input stops: the one rejection value of the whole run, from sources to sinks.

Pure code (decoding an image, selecting faces, fetching a URL, judging an LLM answer, checking a
record) knows nothing of Beam. It returns a `Rejection` where a failure is a normal result, or raises
`Rejected` where it is simpler to stop. The Beam side (`stage.Stage`, `stage.make_reject`) adds what
only it knows — the item's identity and the stage's name — and writes the `records.Reject` line.

This module imports nothing heavy, so every area can use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rejection:
    """A reject reason (snake_case), one human sentence, whether a later run may succeed, and the QA
    categories it concerns (refusal, label_conflict…; for per-category counts and the reject line)."""

    reason: str
    detail: str
    retryable: bool = False
    categories: tuple[str, ...] = ()


class Rejected(Exception):  # noqa: N818 - an outcome, like StopIteration, not a programming error
    """Raised when an input cannot go on; carries its `Rejection`. A stage turns it into a reject."""

    def __init__(self, reason: str, detail: str, retryable: bool = False, categories: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail, retryable, tuple(categories))

    @classmethod
    def of(cls, rejection: Rejection) -> Rejected:
        """The exception carrying `rejection` as it is."""
        err = cls(rejection.reason, rejection.detail, rejection.retryable, rejection.categories)
        err.rejection = rejection
        return err

    @property
    def reason(self) -> str:
        return self.rejection.reason

    @property
    def detail(self) -> str:
        return self.rejection.detail

    @property
    def retryable(self) -> bool:
        return self.rejection.retryable
