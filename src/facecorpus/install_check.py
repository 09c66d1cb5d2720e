"""Checks the installation is sound: exactly one OpenCV distribution, and the heavy imports work.

Run by `make` after every install (`python -m facecorpus.install_check`) and by the test suite.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def installed_opencv() -> list[str]:
    """Names of the OpenCV wheels installed in this environment."""
    names = set()
    for dist in md.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name in OPENCV_DISTRIBUTIONS:
            names.add(name)
    return sorted(names)


def problems() -> list[str]:
    out = []
    cv = installed_opencv()
    if len(cv) != 1:
        out.append(
            f"expected exactly one OpenCV distribution, found {cv or 'none'}: "
            "pip uninstall -y " + " ".join(OPENCV_DISTRIBUTIONS) + " && pip install 'opencv-python-headless>=4.10,<5'"
        )
    return out


def main() -> int:
    found = problems()
    for p in found:
        print(f"facecorpus install check: {p}", file=sys.stderr)
    if not found:
        print(f"facecorpus install check: ok (cv2 from {installed_opencv()[0]})")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
