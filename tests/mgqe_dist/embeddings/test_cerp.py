import math

import pytest
import torch

from mgqe_dist.config import TrainConfig
from mgqe_dist.embeddings import CERPEmbedding, build_embedding
from mgqe_dist.embeddings.cerp import csr_bits
from mgqe_dist.models import build_model
from mgqe_dist.train.data import Interactions
from mgqe_dist.train.loop import train_epochs
from mgqe_dist.train.objectives import SampledLogLoss


def _cerp(n: int = 1000, dim: int = 8, **options: object) -> CERPEmbedding:
    torch.manual_seed(0)
    table = build_embedding("cerp", n, dim, **options)
    assert isinstance(table, CERPEmbedding)
    return table


def _prune_steps(table: CERPEmbedding, steps: int = 60) -> None:
    """A few Adam steps on a task that pulls every composed value towards zero."""
    optimizer = torch.optim.Adam(table.parameters(), lr=0.05)
    for _ in range(steps):
        out = table(torch.arange(table.num_embeddings))
        loss = out.pow(2).mean() + table.extra_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_every_id_gets_its_own_pair_of_meta_rows() -> None:
    table = _cerp(n=1000)
    assert table.buckets == 32  # ceil(sqrt(1000))
    ids = torch.arange(1000)
    pairs = set(zip((ids % table.buckets).tolist(), (ids // table.stride).tolist(), strict=True))
    assert len(pairs) == 1000
    assert (ids // table.stride).max() < table.buckets
    with pytest.raises(ValueError, match="ids would share both rows"):
        _cerp(n=1000, buckets=31)


def test_forward_composes_one_row_of_each_meta_table() -> None:
    table = _cerp(n=50, dim=8, threshold_init=-100.0)  # sigmoid(-100) ~ 0: nothing pruned
    ids = torch.tensor([[0, 7], [49, 7]])
    expected = table.p[ids % table.buckets] + table.q[ids // table.stride]
    torch.testing.assert_close(table(ids), expected)
    concat = _cerp(n=50, dim=8, composition="concat", threshold_init=-100.0)
    assert concat.p.shape == (8, 4)
    out = concat(ids)
    torch.testing.assert_close(out[..., :4], concat.p[ids % concat.buckets])
    torch.testing.assert_close(out[..., 4:], concat.q[ids // concat.stride])


def test_regularizer_rewards_nonzeros_and_halves_every_epoch() -> None:
    table = _cerp(threshold_decay=0.0)
    table(torch.arange(10))
    assert table.extra_loss() < 0
    assert table.extra_loss() == 0  # reset by the call before
    table.end_epoch()
    assert float(table.gamma) == 0.5


def test_learned_thresholds_prune_to_the_budget_and_retraining_keeps_the_mask() -> None:
    # Without the regularizer (which holds values away from zero), the task's pull to zero
    # and the thresholds prune.
    table = _cerp(threshold_init=-6.0, sparsity=0.5, prune_epochs=3, regularizer_weight=0.0)
    dense = table.nonzeros()
    _prune_steps(table)
    assert table.nonzeros() <= table.budget() < dense
    table.end_epoch()
    assert table.selectable() and not bool(table.forced)
    # Lottery ticket: the initial values under the kept mask, which later steps never leave.
    torch.testing.assert_close(table.p.detach(), table.p_init * table.p_mask)
    kept = int(table.p_mask.sum() + table.q_mask.sum())
    _prune_steps(table)
    assert table.nonzeros() <= kept <= table.budget()
    assert not table.p.detach()[~table.p_mask].any()
    assert table.extra_loss() == 0  # no regularizer once pruning is over


def test_pruning_out_of_epochs_keeps_the_largest_values_up_to_the_budget() -> None:
    table = _cerp(sparsity=0.9, prune_epochs=2)
    table.end_epoch()
    assert not table.selectable()
    p, q = table.p.detach().clone(), table.q.detach().clone()
    table.end_epoch()
    assert table.selectable() and bool(table.forced)
    assert int(table.p_mask.sum() + table.q_mask.sum()) == table.budget()
    smallest_kept = torch.cat([p[table.p_mask], q[table.q_mask]]).abs().min()
    largest_cut = torch.cat([p[~table.p_mask], q[~table.q_mask]]).abs().max()
    assert smallest_kept >= largest_cut


def test_serving_size_counts_exactly_the_stored_nonzeros() -> None:
    table = _cerp(sparsity=0.75, prune_epochs=1)
    table.end_epoch()
    bits = 0
    for meta in table.meta_tables():
        csr = meta.detach().to_sparse_csr()
        nnz, rows, columns = csr.values().numel(), meta.shape[0], meta.shape[1]
        assert nnz == int(meta.count_nonzero())
        bits += nnz * (32 + math.ceil(math.log2(columns)))
        bits += (rows + 1) * math.ceil(math.log2(nnz + 1))
    assert table.serving_bits() == bits
    assert csr_bits(torch.zeros(3, 2)) == 4 * 1  # no values, four one-bit row pointers
    full = 1000 * 8 * 32
    assert table.serving_bits() < full / 10


def test_the_loop_keeps_a_retraining_epoch_as_best() -> None:
    torch.manual_seed(0)
    train = Interactions(users=torch.arange(40) % 10, items=torch.arange(40) % 16)
    tables = {"users": _cerp(10, 4, prune_epochs=2), "items": _cerp(16, 4, prune_epochs=2)}
    model = build_model("gmf", tables)
    cfg = TrainConfig(epochs=4, batch_size=16, early_stopping_patience=1, progress_updates=0)
    scores = iter([0.9, 0.8, 0.1, 0.2])  # the pruning epochs score best but may not be kept
    result = train_epochs(
        model, SampledLogLoss(train, 16, 4), cfg, 0, lambda: {"v": next(scores)}, select_by="v"
    )
    assert result.best_epoch == 4 and len(result.history) == 4
    with pytest.raises(ValueError, match="no epoch of 2 met every table's memory budget"):
        train_epochs(
            build_model("gmf", {"users": _cerp(10, 4), "items": _cerp(16, 4)}),
            SampledLogLoss(train, 16, 4),
            TrainConfig(epochs=2, batch_size=16, progress_updates=0),
            0,
            lambda: {"v": 0.0},
            select_by="v",
        )
