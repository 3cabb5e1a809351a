"""Sharded GMF training steps/s with 1 and 2 workers, FE and MGQE, as ratios in one run.

Each worker is a process in a gloo (CPU) or nccl (GPU) group running the trainer's own step
(`train_step`) on its rank::world slice of the same global batch, with the model wrapped in
DistributedModelParallel exactly as `mgqe-dist train --set trainer.num_workers=N` builds it
(Ray Train only launches these processes, so it is left out of the timing). On CPU the
machine's cores are split evenly between the workers.

    .venv/bin/python -m benchmarks.distributed_step [--batch-size 2048] [--steps 30]
        [--workers 1 2] [--device cpu|cuda] [--sharding-type auto]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.common import DIM, KINDS, ML1M_ITEMS, ML1M_USERS, training_ids
from mgqe_dist.config import TrainerConfig
from mgqe_dist.size import embedding_modules
from mgqe_dist.torchrec.sharding import shard_model, sharding_plan
from mgqe_dist.train.distributed import (
    attach_embedding_optimizer,
    build_collection_model,
    make_optimizer,
    train_step,
)

COMPARED = ("full", "mgqe")
WARMUP = 5


def gmf_spec(name: str) -> dict:
    """The trainer's model spec for GMF on MovieLens-1M-sized tables with kind `name`."""
    kind, options = KINDS[name]
    tables = {
        table: {"kind": kind, "num_embeddings": n, "embedding_dim": DIM, "options": options(n)}
        for table, n in (("users", ML1M_USERS), ("items", ML1M_ITEMS))
    }
    return {"model": "gmf", "options": {}, "tables": tables}


def global_batch(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One GMF-like global batch (Zipf positives, uniform negatives), the same on every rank."""
    generator = torch.Generator().manual_seed(0)
    users = training_ids(ML1M_USERS, size, generator)
    items = training_ids(ML1M_ITEMS, size, generator)
    return users, items, (torch.rand(size, generator=generator) < 0.2).float()


def _worker(rank: int, world: int, args: argparse.Namespace, name: str, root: str) -> None:
    backend = "nccl" if args.device == "cuda" else "gloo"
    dist.init_process_group(
        backend, init_method=f"file://{root}/store", rank=rank, world_size=world
    )
    if args.device == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(0)
    trainer = TrainerConfig(num_workers=world)
    model = build_collection_model(gmf_spec(name), torch.device("meta"))
    attach_embedding_optimizer(model, trainer)
    forced = None if args.sharding_type == "auto" else args.sharding_type
    dmp = shard_model(model, device, forced)
    optimizer = make_optimizer(dmp, 1e-3, trainer)
    tables = embedding_modules(dmp)
    mine = tuple(t[rank::world].to(device) for t in global_batch(args.batch_size))

    def step() -> None:
        train_step(dmp, optimizer, tables, mine, args.batch_size, world)  # type: ignore[arg-type]

    for _ in range(WARMUP):
        step()
    _sync(device)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    dist.barrier()
    seconds = (time.perf_counter() - start) / args.steps
    if rank == 0:
        plan = ",".join(sorted(set(sharding_plan(dmp).values())))
        Path(root, "result").write_text(f"{seconds} {plan}")
    dist.destroy_process_group()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_run(args: argparse.Namespace, name: str, world: int) -> tuple[float, str]:
    """Mean seconds of one global step with `world` workers, and the sharding plan used."""
    with tempfile.TemporaryDirectory() as root:
        mp.spawn(_worker, args=(world, args, name, root), nprocs=world)
        seconds, plan = Path(root, "result").read_text().split()
    return float(seconds), plan


def main() -> None:
    """Time FE and MGQE at each worker count; print steps/s and ratios to the baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sharding-type", default="auto")
    args = parser.parse_args()
    if args.device == "cuda" and max(args.workers) > torch.cuda.device_count():
        parser.error(
            f"--workers {max(args.workers)} needs as many GPUs; found {torch.cuda.device_count()}"
        )
    times = {
        (name, world): time_run(args, name, world) for world in args.workers for name in COMPARED
    }
    print(
        f"Sharded GMF step, global batch {args.batch_size}, {args.steps} steps, {args.device}, "
        f"torch {torch.__version__}, {os.cpu_count()} cores"
    )
    first = args.workers[0]
    for (name, world), (seconds, plan) in times.items():
        vs_workers = times[(name, first)][0] / seconds
        vs_fe = seconds / times[("full", world)][0]
        print(
            f"  {name:<6}{world} worker(s)  {1 / seconds:7.2f} steps/s  "
            f"{args.batch_size / seconds / 1000:7.1f}k samples/s  "
            f"speed-up vs {first} worker(s) {vs_workers:5.2f}  "
            f"step time vs FE {vs_fe:5.2f}  plan {plan}"
        )


if __name__ == "__main__":
    main()
