"""DMP over gloo with 2 processes: sharded training equals single-process training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mgqe_dist.config import TrainerConfig
from mgqe_dist.size import embedding_modules
from mgqe_dist.torchrec.sharding import (
    SHARDING_TYPES,
    gather_full_state,
    load_full_state,
    shard_model,
    sharding_plan,
)
from mgqe_dist.train.distributed import (
    attach_embedding_optimizer,
    build_collection_model,
    make_optimizer,
    train_step,
)

WORLD = 2
STEPS = 4
BATCH = 16
TRAINER = TrainerConfig(embedding_optimizer="adagrad", embedding_learning_rate=0.1)


def _spec(kind: str) -> dict:
    options = {"init_std": 0.1}
    if kind == "mgqe":
        options |= {"tier_boundaries": [5], "num_subspaces": 4, "num_centroids": [8, 4]}
    tables = {
        name: {"kind": kind, "num_embeddings": n, "embedding_dim": 8, "options": options}
        for name, n in (("users", 40), ("items", 30))
    }
    return {"model": "gmf", "options": {}, "tables": tables}


def _batches() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(7)
    return [
        (
            torch.randint(0, 40, (BATCH,), generator=generator),
            torch.randint(0, 30, (BATCH,), generator=generator),
            (torch.rand(BATCH, generator=generator) > 0.5).float(),
        )
        for _ in range(STEPS)
    ]


def _train(model: torch.nn.Module, rank: int, world: int) -> None:
    optimizer = make_optimizer(model, 0.01, TRAINER)
    tables = embedding_modules(model)
    for batch in _batches():
        mine = tuple(t[rank::world] for t in batch)
        train_step(model, optimizer, tables, mine, BATCH, world)


def _sharded_worker(rank: int, kind: str, sharding_type: str, root: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{root}/store", rank=rank, world_size=WORLD)
    torch.manual_seed(rank)  # shards initialise differently; the start state is loaded below
    model = build_collection_model(_spec(kind), torch.device("meta"))
    attach_embedding_optimizer(model, TRAINER)
    dmp = shard_model(model, torch.device("cpu"), sharding_type)
    load_full_state(dmp, torch.load(f"{root}/start.pt"))
    _train(dmp, rank, WORLD)
    state = gather_full_state(dmp)
    if rank == 0:
        torch.save({"state": state, "plan": sharding_plan(dmp)}, f"{root}/sharded.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["mgqe", "full"])
@pytest.mark.parametrize("sharding_type", SHARDING_TYPES)
def test_sharded_matches_unsharded(tmp_path: Path, kind: str, sharding_type: str) -> None:
    torch.manual_seed(0)
    reference = build_collection_model(_spec(kind), torch.device("cpu"))
    attach_embedding_optimizer(reference, TRAINER)
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    torch.save(start, tmp_path / "start.pt")
    _train(reference, rank=0, world=1)

    mp.spawn(_sharded_worker, args=(kind, sharding_type, str(tmp_path)), nprocs=WORLD)
    result = torch.load(tmp_path / "sharded.pt")
    assert set(result["plan"].values()) == {sharding_type}
    expected = reference.state_dict()
    assert result["state"].keys() == expected.keys()
    for key, value in expected.items():
        assert not torch.equal(value, start[key]), f"{key} did not train"
        got = result["state"][key]
        print(
            key,
            (got - value).abs().max().item(),
            ((got - start[key]).norm() / (value - start[key]).norm()).item(),
        )
    for key, value in expected.items():
        torch.testing.assert_close(result["state"][key], value, rtol=1e-4, atol=1e-5)
