"""`facecorpus llm …`: the embedded OpenAI-compatible server."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="The embedded LLM server (llama.cpp) for local runs.")


@app.command("serve")
def serve_command(
    model: Annotated[str, typer.Option("--model", help="LLM model pack (facecorpus models pull NAME).")] = "smollm2",
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1; 0 picks a free one.")] = 8080,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default: all, at most 8).")] = None,
    parallel: Annotated[int, typer.Option("--parallel", help="Requests served at once.")] = 2,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="llama.cpp's own logs.")] = False,
) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions on 127.0.0.1 until Ctrl-C."""
    from .local_server import serve_forever

    serve_forever(model, port, threads, parallel, verbose)
