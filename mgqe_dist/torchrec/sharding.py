"""DistributedModelParallel glue: plan and shard the per-id tables, and move whole (unsharded)
states in and out of a sharded model.

Gradients are averaged over ranks: DDP averages dense ones, and TorchRec divides the embedding
gradients of its backward all-to-all by the world size (its default gradient division).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.modules.embedding_modules import EmbeddingCollection

# Sharding types of TorchRec's EmbeddingCollectionSharder; all four run on CPU over gloo.
SHARDING_TYPES = ("data_parallel", "table_wise", "row_wise", "column_wise")


def shard_model(
    model: nn.Module, device: torch.device, sharding_type: str | None = None
) -> DistributedModelParallel:
    """Wrap `model` in DMP over the default process group. `sharding_type` forces one type for
    every table; None lets TorchRec's planner choose per table."""
    if sharding_type is not None and sharding_type not in SHARDING_TYPES:
        raise ValueError(f"sharding_type {sharding_type!r}: expected one of {SHARDING_TYPES}")
    world_size = dist.get_world_size()
    constraints = None
    if sharding_type is not None:
        constraints = {
            config.name: ParameterConstraints(
                sharding_types=[sharding_type],
                # Column-wise: one column block per rank where the dim allows it.
                min_partition=max(1, config.embedding_dim // world_size),
            )
            for module in model.modules()
            if isinstance(module, EmbeddingCollection)
            for config in module.embedding_configs()
        }
    sharder = EmbeddingCollectionSharder()
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=world_size, compute_device=device.type),
        constraints=constraints,
    )
    plan = planner.collective_plan(model, [sharder], dist.GroupMember.WORLD)
    return DistributedModelParallel(
        model,
        device=device,
        sharders=[sharder],  # type: ignore[list-item]
        plan=plan,
    )


def sharding_plan(dmp: DistributedModelParallel) -> dict[str, str]:
    """Table -> sharding type chosen for it."""
    return {
        table: option.sharding_type
        for module_plan in dmp.plan.plan.values()
        for table, option in module_plan.items()  # type: ignore[attr-defined]
    }


@torch.no_grad()
def gather_full_state(dmp: DistributedModelParallel) -> dict[str, torch.Tensor] | None:
    """The whole unsharded state on rank 0 (None elsewhere); every rank must call it."""
    rank = dist.get_rank()
    state: dict[str, torch.Tensor] = {}
    for key, value in dmp.state_dict().items():
        if isinstance(value, ShardedTensor):
            full = torch.empty(value.size(), dtype=value.dtype) if rank == 0 else None
            value.gather(dst=0, out=full)
            if full is not None:
                state[key] = full
        else:
            state[key] = value.detach().cpu().clone()
    return state if rank == 0 else None


@torch.no_grad()
def load_full_state(dmp: DistributedModelParallel, state: dict[str, torch.Tensor]) -> None:
    """Copy a whole unsharded state (present on every rank) into this rank's shards."""
    for key, value in dmp.state_dict().items():
        if key not in state:
            raise KeyError(f"state has no entry for {key!r}")
        if isinstance(value, ShardedTensor):
            for shard in value.local_shards():
                index = tuple(
                    slice(offset, offset + size)
                    for offset, size in zip(
                        shard.metadata.shard_offsets, shard.metadata.shard_sizes, strict=True
                    )
                )
                shard.tensor.copy_(state[key][index])
        else:
            value.copy_(state[key])
