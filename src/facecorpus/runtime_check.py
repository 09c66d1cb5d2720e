"""`python -m facecorpus.runtime_check [--require cuda]`: what this machine or image can run, said loudly.

The Dataflow images run it as their self-test (docker/Dockerfile.gpu: at build, and as the first
thing a worker does is not possible — so run the image once on a GPU VM: `docker run --gpus all IMAGE
python -m facecorpus.runtime_check --require cuda`). It prints the versions the launcher must match
(Python, Beam, facecorpus — the same values as the image labels), onnxruntime's available providers,
and then really runs a one-node ONNX graph on each requested provider: onnxruntime silently falls
back to the CPU when the CUDA or cuDNN libraries cannot be loaded, and `faces.providers: auto` would
hide it. With `--require cuda` a fallback is exit code 1 and a line saying which library is missing.

`--require cuda-libs` is the part of that which needs no GPU, for the GPU image's build: onnxruntime is
the GPU build and its CUDA provider library loads with every library it links (cuDNN, cuBLAS, cuFFT, the
CUDA runtime) resolved — a missing cuDNN fails the build naming the file, instead of a silent CPU
fallback on the workers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def versions() -> dict[str, str]:
    """Python (major.minor), Beam and facecorpus versions: what the launcher and the image must share."""
    import apache_beam

    from . import __version__

    return {"python": platform.python_version().rsplit(".", 1)[0], "apache_beam": apache_beam.__version__,
            "facecorpus": __version__}


def _tiny_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "check", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def provider_check(name: str) -> dict[str, Any]:
    """Run the tiny graph on provider `name` ('cuda', 'cpu'); which provider really ran it, and why not."""
    import numpy as np
    import onnxruntime as ort

    wanted = PROVIDERS[name]
    result: dict[str, Any] = {"provider": wanted, "ok": False}
    if name == "cuda" and hasattr(ort, "preload_dlls"):
        try:  # the nvidia-* wheels (onnxruntime-gpu[cuda,cudnn]) hold CUDA and cuDNN: load them first
            ort.preload_dlls()
        except Exception as e:  # noqa: BLE001 - reported below, the session decides
            result["preload"] = f"{type(e).__name__}: {e}"
    if wanted not in ort.get_available_providers():
        result["why"] = f"{wanted} is not in this onnxruntime build ({ort.__version__}); install onnxruntime-gpu"
        return result
    try:
        session = ort.InferenceSession(_tiny_model(), providers=[wanted, "CPUExecutionProvider"])
        out = session.run(None, {"x": np.array([1.0, 2.0], np.float32)})[0]
    except Exception as e:  # noqa: BLE001 - a broken provider is a finding
        result["why"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        return result
    used = session.get_providers()[0]
    result["ran_on"] = used
    result["ok"] = used == wanted and out.tolist() == [2.0, 4.0]
    if used != wanted:
        result["why"] = (f"onnxruntime fell back to {used}: the CUDA or cuDNN libraries could not be loaded "
                         "(see the onnxruntime warning above; the image needs onnxruntime-gpu[cuda,cudnn] or "
                         "the CUDA 12 / cuDNN 9 libraries on LD_LIBRARY_PATH, and the host an NVIDIA driver)")
    return result


def cuda_libs_check() -> dict[str, Any]:
    """Whether onnxruntime's CUDA provider library loads here with its CUDA and cuDNN dependencies (no GPU needed)."""
    import ctypes
    from pathlib import Path

    import onnxruntime as ort

    result: dict[str, Any] = {"provider": "CUDA provider libraries", "ok": False}
    if hasattr(ort, "preload_dlls"):
        try:  # the nvidia-* wheels' CUDA and cuDNN: onnxruntime finds them through this
            ort.preload_dlls()
        except Exception as e:  # noqa: BLE001 - the load below says what is missing
            result["preload"] = f"{type(e).__name__}: {e}"
    if PROVIDERS["cuda"] not in ort.get_available_providers():
        result["why"] = (f"{PROVIDERS['cuda']} is not in this onnxruntime build ({ort.__version__}): the CPU "
                         "onnxruntime is installed; install onnxruntime-gpu[cuda,cudnn] (and uninstall onnxruntime)")
        return result
    lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(lib))
    except OSError as e:  # the loader names the first library it could not find, e.g. libcudnn.so.9
        result["why"] = f"cannot load {lib.name}: {str(e).splitlines()[0][:300]}"
        return result
    result.update({"ok": True, "library": str(lib)})
    return result


CHECKS = {**{name: (lambda n=name: provider_check(n)) for name in PROVIDERS}, "cuda-libs": cuda_libs_check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecorpus.runtime_check", description=__doc__.splitlines()[0])
    parser.add_argument("--require", action="append", choices=sorted(CHECKS), default=[],
                        help="providers that must really run (repeatable); default: report only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    report: dict[str, Any] = {"versions": versions(), "available_providers": ort.get_available_providers(),
                              "checks": [CHECKS[p]() for p in (args.require or ["cpu"])]}
    failed = [c for c in report["checks"] if not c["ok"]]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"versions: {report['versions']}")
        print(f"onnxruntime {ort.__version__} providers: {', '.join(report['available_providers'])}")
        for c in report["checks"]:
            print(f"{c['provider']}: {'OK' if c['ok'] else 'FAILED'} {c.get('why', '')}".rstrip())
    if failed and args.require:
        print(f"runtime check FAILED: {', '.join(c['provider'] for c in failed)} cannot run here", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
