"""What every run records next to its metrics: versions, host and the code revision."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

_PACKAGES = ("mgqe-dist", "torch", "torchrec", "fbgemm-gpu-cpu", "ray", "pyarrow", "numpy")


def versions() -> dict[str, Any]:
    """Python, platform and installed versions of the packages a result depends on."""
    found: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["git_commit"] = _git_commit()
    return found


def _git_commit() -> str | None:
    """HEAD of the checkout this package runs from, suffixed "-dirty" with local changes."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    return head + ("-dirty" if _git("status", "--porcelain") else "")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
