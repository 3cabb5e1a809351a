"""Sharded training inside an initialised process group, one process per worker.

The model's tables are CollectionTables whose per-id state DistributedModelParallel shards.
Each worker trains on its strided slice (rank::world) of every global batch, so all workers
take the same number of steps, together they cover every sample, and a step equals one
single-process step on the global batch. Validation and the final evaluation run on rank 0
with the unsharded model gathered from the shards, through the same code as local training.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from mgqe_dist.config import JobConfig, TrainerConfig
from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.models import Recommender
from mgqe_dist.size import embedding_modules
from mgqe_dist.torchrec.sharding import gather_full_state, shard_model, sharding_plan
from mgqe_dist.torchrec.table import CollectionTable, local_key_map
from mgqe_dist.train.data import NegativeSampler, PreparedData
from mgqe_dist.train.factory import build_from_spec, model_spec
from mgqe_dist.train.loop import TrainResult, epoch_progress, print_epoch
from mgqe_dist.train.objectives import epoch_samples
from mgqe_dist.train.record import finish_run
from mgqe_dist.train.tasks import evaluate_pairs

# Optimizers of the per-id tables, with the options that make torch's update equal fbgemm's
# fused one (its epsilon), so sharded, replicated and unsharded tables train alike.
EMBEDDING_OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adagrad": (torch.optim.Adagrad, {"eps": 1e-8}),
    "sgd": (torch.optim.SGD, {}),
}
State = dict[str, torch.Tensor]
# Parameter names of the per-id tables inside CollectionTables, and DMP's fused optimizer's key.
PER_ID_PARAMETER = ".collection.embeddings."
FUSED_OPTIMIZER = "tables"


@dataclass
class Progress:
    """Where a sharded run stands; saved in every checkpoint."""

    epoch: int = 1  # the epoch to run next
    step: int = 0  # batches of that epoch already trained
    loss_sums: list[float] = field(default_factory=lambda: [0.0, 0.0])  # task, aux so far
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -math.inf
    stopped_early: bool = False


# Called by every rank at each checkpoint: (progress, best unsharded state on rank 0, model,
# optimizer). The Ray Train entry writes and reports the checkpoint.
SaveHook = Callable[[Progress, State | None, nn.Module, KeyedOptimizer], None]


def build_collection_model(spec: dict[str, Any], device: torch.device) -> Recommender:
    """The spec's model with every table a CollectionTable; `device="meta"` leaves the per-id
    state unallocated until DMP shards it."""

    def table(name: str, table_spec: Mapping[str, Any]) -> EmbeddingModule:
        return CollectionTable(
            name,
            table_spec["kind"],
            table_spec["num_embeddings"],
            table_spec["embedding_dim"],
            table_spec["options"],
            device,
        )

    return build_from_spec(spec, table)


def attach_embedding_optimizer(model: nn.Module, cfg: TrainerConfig) -> None:
    """Fuse the per-id tables' optimizer into backward (before DMP, which reads it)."""
    params = [
        p
        for module in model.modules()
        if isinstance(module, EmbeddingCollection)
        for p in module.parameters()
    ]
    optimizer, options = _table_optimizer(cfg)
    apply_optimizer_in_backward(optimizer, params, options)


def make_optimizer(model: nn.Module, learning_rate: float, cfg: TrainerConfig) -> CombinedOptimizer:
    """Adam over dense parameters and codebooks; the per-id tables keep the embedding optimizer:
    fused by DMP for sharded tables, a plain one for tables DMP replicates (data_parallel)."""
    remaining = dict(in_backward_optimizer_filter(model.named_parameters()))
    replicated = {k: p for k, p in remaining.items() if PER_ID_PARAMETER in k}
    dense = {k: p for k, p in remaining.items() if k not in replicated}
    table_optimizer, options = _table_optimizer(cfg)
    optimizers: list[tuple[str, KeyedOptimizer]] = [
        ("dense", KeyedOptimizerWrapper(dense, lambda ps: torch.optim.Adam(ps, lr=learning_rate)))
    ]
    if replicated:
        optimizers.append(
            (
                "replicated_tables",
                KeyedOptimizerWrapper(replicated, lambda ps: table_optimizer(ps, **options)),
            )
        )
    fused = getattr(model, "fused_optimizer", None)
    if fused is not None:
        optimizers.append((FUSED_OPTIMIZER, fused))
    return CombinedOptimizer(optimizers)


def _table_optimizer(cfg: TrainerConfig) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    optimizer, options = EMBEDDING_OPTIMIZERS[cfg.embedding_optimizer]
    return optimizer, {"lr": cfg.embedding_learning_rate, **options}


def train_step(
    model: nn.Module,
    optimizer: KeyedOptimizer,
    tables: list[EmbeddingModule],
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    global_size: int,
    world_size: int,
) -> torch.Tensor:
    """One step on this rank's part of a global batch of `global_size` samples; returns the
    rank's shares of the task and auxiliary losses (they sum to the batch's over ranks).

    Gradients are averaged over ranks, so the task loss is scaled by the world size: the
    average of world * (rank's loss sum) / global_size is the global batch's mean loss, also
    when ranks hold one sample more or less.
    """
    users, items, labels = batch
    logits = model(users, items)
    task = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
    task = task * (world_size / global_size)
    aux = sum((t.extra_loss() for t in tables), torch.zeros(()))
    optimizer.zero_grad(set_to_none=True)
    (task + aux).backward()
    optimizer.step()
    return torch.stack([task.detach(), aux.detach()]).double() / world_size


class ShardedRun:
    """One worker's part of a sharded training run: setup, epochs, checkpoints, final result."""

    def __init__(self, job: JobConfig, data: PreparedData, device: torch.device) -> None:
        self.job, self.data, self.device = job, data, device
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.spec = model_spec(job.model, job.embedding, data)
        torch.manual_seed(job.seed)
        model = build_collection_model(self.spec, torch.device("meta"))
        self.local_keys = local_key_map(model)
        attach_embedding_optimizer(model, job.trainer)
        forced = None if job.trainer.sharding_type == "auto" else job.trainer.sharding_type
        self.model = shard_model(model, device, forced)
        self.optimizer = make_optimizer(self.model, job.train.learning_rate, job.trainer)
        self.tables = embedding_modules(self.model)
        self.sampler = NegativeSampler(data.train, data.num_known_items)
        self.progress = Progress()
        self.best_state: State | None = None

    def plan(self) -> dict[str, str]:
        """Table -> sharding type the planner chose."""
        return sharding_plan(self.model)

    def train(self, save: SaveHook) -> None:
        """Run the remaining epochs (all of them unless resumed), checkpointing through `save`."""
        cfg, progress = self.job.train, self.progress
        while progress.epoch <= cfg.epochs and not progress.stopped_early:
            started = time.time()
            epoch = progress.epoch
            batches, samples = self._epoch(epoch)
            # Loss sums restored from a mid-epoch checkpoint are global: rank 0 carries them.
            sums = torch.tensor(progress.loss_sums if self.rank == 0 else [0.0, 0.0]).double()
            self.model.train()
            resumed = sum(len(batch) for batch in batches[: progress.step])
            bar = epoch_progress(len(samples[0]), epoch, cfg, self.rank == 0, resumed)
            for step in range(progress.step, len(batches)):
                batch = batches[step]
                mine = batch[self.rank :: self.world]
                users, items, labels = (t[mine].to(self.device) for t in samples)
                sums += train_step(
                    self.model,
                    self.optimizer,
                    self.tables,
                    (users, items, labels),
                    len(batch),
                    self.world,
                )
                bar.advance(len(batch), status=f"{self.world} workers")
                every = self.job.trainer.checkpoint_every_steps
                if every and (step + 1) % every == 0 and step + 1 < len(batches):
                    progress.step, progress.loss_sums = step + 1, self._global(sums)
                    save(progress, self.best_state, self.model, self.optimizer)
            bar.close()
            task, aux = (s / len(batches) for s in self._global(sums))
            metrics, state = self._validate()
            record = {"epoch": epoch, "loss": task, "aux_loss": aux, **metrics}
            record["seconds"] = round(time.time() - started, 2)
            self._end_epoch(record, state)
            save(progress, self.best_state, self.model, self.optimizer)

    def finish(self, started: float, extra: dict[str, Any]) -> dict[str, Any] | None:
        """On rank 0: evaluate the best-validation model and write the run (as local training
        does); other ranks return None."""
        if self.rank != 0:
            return None
        model = build_from_spec(self.spec)
        assert self.best_state is not None, "no epoch was validated"
        model.load_state_dict(self.best_state)
        progress = self.progress
        result = TrainResult(progress.history, progress.best_epoch, progress.stopped_early)
        return finish_run(
            self.job, self.data, self.spec, model, self._evaluate, result, started, extra
        )

    def _epoch(self, epoch: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Samples and global batches of `epoch`, identical on every rank and after a resume."""
        generator = torch.Generator().manual_seed(self.job.seed * 1_000_003 + epoch)
        num_negatives = self.job.train.num_negatives
        samples = epoch_samples(self.data.train, self.sampler, num_negatives, generator)
        batches = torch.randperm(len(samples[0]), generator=generator).split(
            self.job.train.batch_size
        )
        return batches, samples

    def _validate(self) -> tuple[dict[str, float], State | None]:
        """Gather the shards, evaluate the unsharded model on rank 0 and share the metrics;
        rank 0 also gets the unsharded state (in the local model's keys), other ranks None."""
        state = gather_full_state(self.model)
        shared: list[Any] = [None]
        local = None
        if state is not None:
            local = {self.local_keys[key]: value for key, value in state.items()}
            model = build_from_spec(self.spec)
            model.load_state_dict(local)
            record = self._evaluate(model, "valid")
            shared[0] = {f"valid_{key}": value for key, value in record.items()}
        dist.broadcast_object_list(shared, src=0)
        return dict(shared[0]), local

    def _evaluate(self, model: Recommender, split: str) -> dict[str, float]:
        return evaluate_pairs(model, self.data, split, self.job.eval)

    @property
    def _select_by(self) -> str:
        return f"valid_ndcg@{self.job.eval.k}"

    def _end_epoch(self, record: dict[str, Any], state: State | None) -> None:
        """Record the epoch, keep the best one's state, decide on early stopping (the same on
        all ranks)."""
        progress, cfg = self.progress, self.job.train
        progress.history.append(record)
        if record[self._select_by] > progress.best_score:
            progress.best_score, progress.best_epoch = record[self._select_by], record["epoch"]
            self.best_state = state
        patience = cfg.early_stopping_patience
        stop = bool(patience) and record["epoch"] - progress.best_epoch >= patience
        progress.epoch, progress.step, progress.loss_sums = record["epoch"] + 1, 0, [0.0, 0.0]
        progress.stopped_early = stop and record["epoch"] < cfg.epochs
        if self.rank == 0:
            print_epoch(record, cfg.epochs, best=progress.best_epoch == record["epoch"])
            if stop:
                print(f"no better {self._select_by} for {patience} epochs: stopping", flush=True)

    def _global(self, sums: torch.Tensor) -> list[float]:
        total = sums.clone()
        dist.all_reduce(total)
        return total.tolist()


def progress_from_dict(raw: dict[str, Any]) -> Progress:
    """A Progress read back from a checkpoint's JSON."""
    return Progress(**{f.name: raw[f.name] for f in dataclasses.fields(Progress)})
