"""Errors a user can cause: the CLI prints them as one line and exits non-zero, without a traceback."""


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
