"""Shared benchmark pieces: the embedding kinds compared, id samplers and a step timer."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mgqe_dist.embeddings import EmbeddingModule, build_embedding

DIM = 64
ML1M_USERS, ML1M_ITEMS = 6041, 3707

# name -> (embedding kind, options for a table of n frequency-ranked ids); paper settings,
# head = top 10%. SQ and the TorchRec kinds train as FE (they quantize after training).
KINDS: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
    "full": ("full", lambda n: {}),
    "lrf": ("lrf", lambda n: {"rank": 48}),
    "dpq": ("dpq", lambda n: {"num_subspaces": 64, "num_centroids": 256}),
    "mgqe": ("mgqe", lambda n: {"tier_boundaries": [n // 10], "num_centroids": [256, 64]}),
    "mgqe_unshared": (
        "mgqe",
        lambda n: {
            "tier_boundaries": [n // 10],
            "num_centroids": [256, 64],
            "shared_centroids": False,
        },
    ),
    "mgqe_var_d": (
        "mgqe",
        lambda n: {
            "tier_boundaries": [n // 10],
            "num_subspaces": [64, 32],
            "num_centroids": 256,
            "shared_centroids": False,
        },
    ),
}


def build(name: str, n: int, device: torch.device) -> EmbeddingModule:
    """The benchmark table `name` with n ids, on `device`."""
    kind, options = KINDS[name]
    return build_embedding(kind, n, DIM, **options(n)).to(device)


def training_ids(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Ids as a GMF batch sees them: 1 in 5 Zipf-distributed positives, 4 uniform negatives."""
    positives = size // 5
    weights = 1.0 / torch.arange(1, n + 1, dtype=torch.float64)
    zipf = torch.multinomial(weights, positives, replacement=True, generator=generator)
    uniform = torch.randint(n, (size - positives,), generator=generator)
    return torch.cat([zipf, uniform])


def mean_seconds(
    step: Callable[[], None], steps: int, device: torch.device, warmup: int = 5
) -> float:
    """Mean wall time of `step` over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: VmHWM is reset by clear_refs)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gib() -> float:
    """Peak resident memory of this process since the last `reset_peak_rss`, in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status (peak RSS needs Linux)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
