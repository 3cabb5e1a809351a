"""Serving lookup throughput: packed-code decode vs full-embedding row gather, same process.

A 10M x 64 table (default), batches of 4096 ids, uniform and Zipf(1) ids over the
frequency-ranked vocabulary (head ids are the frequent ones). Compared, as ids/s and as a
ratio to the FE gather:
  full            float32 rows, one gather (the baseline)
  mgqe            shared codebook, K = [256, 64] (8- and 6-bit codes, head = top 10%), D = 64
  dpq             one tier, K = 256, D = 64
  sq              8-bit codes with per-dimension min/step
  torchrec_int8   TorchRec QuantEmbeddingBagCollection (fbgemm), one id per bag
Codes are random (decode cost does not depend on what they are), so no training is needed.

    .venv/bin/python -m benchmarks.serving [--rows 10000000] [--batches 200] [--device cpu]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch

from benchmarks.common import DIM, mean_seconds
from mgqe_dist.serve.bitpack import bits_for, pack_bits
from mgqe_dist.serve.tables import CodebookTable, FloatTable, ScalarQuantTable

BATCH = 4096


def codebook_table(n: int, centroids: list[int], head: float) -> CodebookTable:
    """A packed-code table with random codes: tier i has K_i centroids, head = top fraction."""
    edges = [0, int(n * head), n] if len(centroids) == 2 else [0, n]
    tiers, packed = [], []
    for (start, stop), k in zip(itertools.pairwise(edges), centroids, strict=True):
        codes = torch.randint(k, (stop - start, DIM))
        packed.append(pack_bits(codes, bits_for(k)))
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
    return CodebookTable(tiers, packed, [book], shared=True, embedding_dim=DIM)


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
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-torchrec", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    n = args.rows
    generator = torch.Generator().manual_seed(0)
    print(f"building tables: {n:,} x {DIM}, batch {BATCH}, {torch.get_num_threads()} threads")
    started = time.time()
    weight = torch.randn(n, DIM, generator=generator)
    tables: dict[str, torch.nn.Module] = {
        "mgqe": codebook_table(n, [256, 64], head=0.1),
        "dpq": codebook_table(n, [256], head=1.0),
        "sq": ScalarQuantTable(
            pack_bits(torch.randint(256, (n, DIM), generator=generator), 8),
            torch.zeros(DIM),
            torch.full((DIM,), 0.01),
            n,
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
    bytes_per_id = {
        name: t.serving_bits() / n / 8
        for name, t in tables.items()  # type: ignore[operator]
    }
    bytes_per_id["torchrec_int8"] = DIM + 16  # int8 row + fp16 scale/bias, as TorchRec stores
    for dist, sample in (
        ("uniform", lambda: torch.randint(n, (BATCH,), generator=generator)),
        ("zipf", lambda: zipf_ids(n, BATCH, generator)),
    ):
        batches = [sample().to(device) for _ in range(args.batches)]
        seconds = {}
        for name, lookup in lookups.items():
            it = iter(batches * 2)
            with torch.no_grad():
                seconds[name] = mean_seconds(
                    lambda lookup=lookup, it=it: lookup(next(it)), args.batches, device, warmup=5
                )
        base = seconds["full"]
        print(f"\n{dist} ids ({args.batches} batches of {BATCH}, {device}):")
        print(f"{'lookup':<14} {'us/batch':>10} {'M ids/s':>9} {'vs FE':>7} {'bytes/id':>9}")
        for name, s in seconds.items():
            print(
                f"{name:<14} {s * 1e6:>10.1f} {BATCH / s / 1e6:>9.2f} {base / s:>7.2f} "
                f"{bytes_per_id[name]:>9.2f}"
            )


if __name__ == "__main__":
    main()
