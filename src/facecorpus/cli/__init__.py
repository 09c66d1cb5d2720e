"""The `facecorpus` command. Thin: parses arguments, then calls the modules that do the work.

User mistakes (missing file, bad YAML, unknown key, missing model pack, unreachable endpoint) are one
line on stderr and exit code 2 — never a traceback.

By command group: `app.py` (the Typer app, global options, logging, the run summary), `runs.py` (`run`,
`demo`), `outputs.py` (`validate`, `stats`, `finalize`, `schema`), each area's own `cli.py` (`review`,
`export`, `faces`, `models`, `llm`, `prompts`, `laion`, `holdout`), and `main.py` (all of them
registered; the entry point and its exit codes). `python -m facecorpus.cli` runs it (`__main__.py`).
"""

from .app import app
from .main import console_main, main
from .outputs import recorded_card_plots

__all__ = ["app", "console_main", "main", "recorded_card_plots"]
