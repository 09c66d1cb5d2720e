"""ONNX Runtime sessions and execution-provider choice shared by both face backends.

`providers('auto' | 'cpu' | 'cuda')` names what onnxruntime should use. On NVIDIA machines the CUDA
provider comes from the `onnxruntime-gpu` wheel, which must replace `onnxruntime` (both installed
overwrite each other's files); asking for 'cuda' without it is a one-line user error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def providers(choice: str, device_id: int = 0) -> list[Any]:
    """onnxruntime provider list for a recipe's `faces.providers` value.

    'auto' takes CUDA when the installed onnxruntime offers it, else CPU; 'cuda' insists on CUDA (with CPU
    behind it for the few operators CUDA lacks); 'cpu' never touches a GPU.
    """
    have = available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in have:
            raise UserError(
                "faces.providers is 'cuda' but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(have)}); install onnxruntime-gpu instead of onnxruntime: "
                "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
            )
        return [(CUDA, {"device_id": device_id}), CPU]
    if choice == "auto":
        return [(CUDA, {"device_id": device_id}), CPU] if CUDA in have else [CPU]
    raise UserError(f"faces.providers must be auto, cpu or cuda (got {choice!r})")


def provider_names(chosen: list[Any]) -> list[str]:
    return [p[0] if isinstance(p, tuple) else p for p in chosen]


def create_session(path: Path, chosen: list[Any] | None = None, threads: int = 0) -> Any:
    """An InferenceSession for one .onnx file. `threads=0` lets onnxruntime use every core."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings about unused initialisers in exported graphs are noise here
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=chosen or [CPU])
