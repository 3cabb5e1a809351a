"""Serving lookup throughput: code decode vs full-embedding row gather, same process.

A 10M x 64 table (default), batches of 4096 ids, uniform and Zipf(1) ids over the
frequency-ranked vocabulary (head ids are the frequent ones). Each repeat times every lookup
in turn over the same batches; printed are the median over repeats of the time per batch and
of the ratio to that repeat's FE gather (ids/s relative to FE: > 1 is faster), then the
process's peak RSS. Freed memory is kept in the heap (glibc's mallopt, as a tuned server or
jemalloc would): by default glibc hands each batch's freed outputs back to the OS and faults
them in again on the next batch, which on a VM costs more than the lookups being compared.
Compared:
  full            float32 rows, one gather (the baseline)
  mgqe            shared codebook, K = [256, 64] (8- and 6-bit codes, head = top 10%), D = 64
  dpq             one tier, K = 256, D = 64
  sq              8-bit codes with per-dimension min/step
  torchrec_int8   TorchRec QuantEmbeddingBagCollection (fbgemm), one id per bag
Codes are random (decode cost does not depend on what they are), so no training is needed.

    .venv/bin/python -m benchmarks.serving [--rows 10000000] [--batches 100] [--repeats 7]
        [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import resource
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.common import DIM, mean_seconds
from mgqe_dist.serve.bitpack import bits_for
from mgqe_dist.serve.tables import CodebookTable, FloatTable, ScalarQuantTable, ServingTable

BATCH = 4096
# glibc mallopt parameters, and the largest mmap threshold it accepts (64-bit).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MAX_MMAP_THRESHOLD = 32 << 20


def keep_freed_heap() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS, so batch
    outputs are not page-faulted in afresh on every batch; False where libc is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    )


def codebook_table(
    n: int, centroids: list[int], head: float, generator: torch.Generator
) -> CodebookTable:
    """A codebook table with random codes: tier i has K_i centroids, head = top fraction."""
    edges = [0, int(n * head), n] if len(centroids) == 2 else [0, n]
    tiers, codes = [], []
    for (start, stop), k in zip(itertools.pairwise(edges), centroids, strict=True):
        codes.append(torch.randint(k, (stop - start, DIM), generator=generator, dtype=torch.uint8))
        tiers.append(
            {
                "start": start,
                "stop": stop,
                "num_subspaces": DIM,
                "num_centroids": k,
                "bits": bits_for(k),
            }
        )
    book = torch.randn(DIM, max(centroids), 1)
    return CodebookTable(tiers, codes, [book], shared=True, embedding_dim=DIM)


def zipf_ids(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Ids with P(id = r) proportional to 1 / (r + 1), by inverse-CDF sampling."""
    cdf = torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64), 0)
    cdf /= cdf[-1].clone()
    return torch.searchsorted(cdf, torch.rand(size, generator=generator, dtype=torch.float64))


def torchrec_int8(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A lookup through TorchRec's int8 QuantEmbeddingBagCollection built from `weight`."""
    from torchrec import KeyedJaggedTensor

    from mgqe_dist.torchrec.quant_baseline import FEATURE, quantize_table

    quantized = quantize_table(weight, "int8")

    def lookup(ids: torch.Tensor) -> torch.Tensor:
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=[FEATURE], values=ids, lengths=torch.ones_like(ids, dtype=torch.int32)
        )
        return quantized(kjt).to_dict()[FEATURE]

    return lookup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--skip-torchrec", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.rows
    generator = torch.Generator().manual_seed(0)
    heap = "kept" if keep_freed_heap() else "system default (not glibc)"
    print(
        f"building tables: {n:,} x {DIM}, batch {BATCH}, {torch.get_num_threads()} threads, "
        f"freed heap: {heap}"
    )
    started = time.time()
    weight = torch.randn(n, DIM, generator=generator)
    tables: dict[str, ServingTable] = {
        "mgqe": codebook_table(n, [256, 64], 0.1, generator),
        "dpq": codebook_table(n, [256], 1.0, generator),
        "sq": ScalarQuantTable(
            torch.randint(256, (n, DIM), generator=generator, dtype=torch.uint8),
            torch.zeros(DIM),
            torch.full((DIM,), 0.01),
            8,
        ),
    }
    lookups: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    if not args.skip_torchrec and device.type == "cpu":
        lookups["torchrec_int8"] = torchrec_int8(weight)
    tables = {"full": FloatTable(weight), **tables}
    lookups = {name: t.to(device) for name, t in tables.items()} | lookups
    del weight
    print(f"built in {time.time() - started:.0f} s")
    bytes_per_id = {name: t.serving_bits() / n / 8 for name, t in tables.items()}
    bytes_per_id["torchrec_int8"] = DIM + 16  # int8 row + fp16 scale/bias, as TorchRec stores
    for dist, sample in (
        ("uniform", lambda: torch.randint(n, (BATCH,), generator=generator)),
        ("zipf", lambda: zipf_ids(n, BATCH, generator)),
    ):
        batches = [sample().to(device) for _ in range(args.batches)]
        seconds = repeated_seconds(lookups, batches, args.repeats, device)
        print(f"\n{dist} ids ({args.repeats} x {args.batches} batches of {BATCH}, {device}):")
        print(f"{'lookup':<14} {'us/batch':>10} {'M ids/s':>9} {'vs FE':>7} {'bytes/id':>9}")
        for name, runs in seconds.items():
            s = statistics.median(runs)
            vs_fe = statistics.median(fe / t for fe, t in zip(seconds["full"], runs, strict=True))
            print(
                f"{name:<14} {s * 1e6:>10.1f} {BATCH / s / 1e6:>9.2f} {vs_fe:>7.2f} "
                f"{bytes_per_id[name]:>9.2f}"
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"\npeak RSS {peak_mib:,.0f} MiB")


def repeated_seconds(
    lookups: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    batches: list[torch.Tensor],
    repeats: int,
    device: torch.device,
) -> dict[str, list[float]]:
    """Mean seconds per batch of every lookup, in each of `repeats` rounds; the lookups take
    turns within a round, so load from other processes falls on all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in lookups}
    for _ in range(repeats):
        for name, lookup in lookups.items():
            with torch.no_grad():
                step = _next_batch_step(lookup, batches)
                seconds[name].append(mean_seconds(step, len(batches), device))
    return seconds


def _next_batch_step(
    lookup: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor]
) -> Callable[[], None]:
    """A timing step that looks up the next batch, cycling so warm-up steps never run out."""
    cycle = itertools.cycle(batches)

    def step() -> None:
        lookup(next(cycle))

    return step


if __name__ == "__main__":
    main()
