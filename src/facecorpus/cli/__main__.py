"""`python -m facecorpus.cli`: the `facecorpus` command."""

from .main import console_main

console_main()
