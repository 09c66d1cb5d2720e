"""ONNX Runtime sessions and execution-provider choice shared by both face backends.

`providers('auto' | 'cpu' | 'cuda')` names what onnxruntime should use. On NVIDIA machines the CUDA
provider comes from the `onnxruntime-gpu` wheel, which must replace `onnxruntime` (both installed
overwrite each other's files); asking for 'cuda' without it is a one-line user error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import UserError

log = logging.getLogger("facecorpus")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class CudaRequired(list):
    """The provider list of `faces.providers: cuda`: a session that falls back to the CPU is an error."""


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
        return CudaRequired([(CUDA, {"device_id": device_id}), CPU])
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
    wanted = provider_names(chosen or [CPU])
    if CUDA in wanted:
        _load_cuda_libraries(ort)
    session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen or [CPU])
    if CUDA in wanted and session.get_providers()[0] != CUDA:
        # onnxruntime falls back to the CPU without an error when CUDA or cuDNN cannot be loaded
        msg = (f"{path.name}: onnxruntime could not start CUDAExecutionProvider and runs on {session.get_providers()[0]} "
               "(CUDA 12 / cuDNN 9 libraries not found: install onnxruntime-gpu[cuda,cudnn], see "
               "`python -m facecorpus.runtime_check --require cuda`)")
        if isinstance(chosen, CudaRequired):
            raise UserError(msg)
        log.warning("%s", msg)
    return session


_cuda_loaded: list[bool] = []


def _load_cuda_libraries(ort: Any) -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels (onnxruntime-gpu[cuda,cudnn]) once per process."""
    if _cuda_loaded or not hasattr(ort, "preload_dlls"):
        return
    _cuda_loaded.append(True)
    try:
        ort.preload_dlls()
    except Exception as e:  # noqa: BLE001 - the session reports what is missing
        log.warning("onnxruntime.preload_dlls() failed: %s", e)
