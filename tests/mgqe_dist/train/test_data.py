import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from mgqe_dist.config import load_job
from mgqe_dist.train.data import Interactions, NegativeSampler, load_prepared


def test_negatives_never_hit_a_users_positives() -> None:
    # User 0 has seen items 0..7 of 10, so most uniform draws must be re-drawn.
    positives = Interactions(users=torch.zeros(8, dtype=torch.long), items=torch.arange(8))
    sampler = NegativeSampler(positives, num_items=10)
    negatives = sampler.sample(
        torch.zeros(5000, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    assert set(negatives.tolist()) == {8, 9}


def test_negatives_are_roughly_uniform_over_unseen_items() -> None:
    positives = Interactions(users=torch.tensor([0, 1]), items=torch.tensor([0, 1]))
    sampler = NegativeSampler(positives, num_items=4)
    users = torch.zeros(40_000, dtype=torch.long)
    counts = torch.bincount(sampler.sample(users, torch.Generator().manual_seed(1)), minlength=4)
    assert counts[0] == 0
    assert (counts[1:].float() / len(users) - 1 / 3).abs().max() < 0.02


def test_prepared_splits_load_sorted_with_vocab_sizes(tiny_job: Path) -> None:
    data = load_prepared(load_job(tiny_job).data.prepared_dir)
    assert data.num_users == 121 and data.num_items == data.num_known_items + 1
    keys = data.train.users * data.num_items + data.train.items
    assert torch.equal(keys, keys.sort().values)
    assert len(data.valid) == len(data.test) == 120


def test_modified_split_is_detected(tiny_job: Path, tmp_path: Path) -> None:
    copy = tmp_path / "prepared"
    shutil.copytree(load_job(tiny_job).data.prepared_dir, copy)
    test_dir = copy / "test.parquet"
    part = next(test_dir.glob("*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.slice(0, table.num_rows - 1), part)
    with pytest.raises(ValueError, match=r"test\.parquet: checksum mismatch"):
        load_prepared(copy)


def test_user_without_free_items_is_an_error() -> None:
    positives = Interactions(users=torch.zeros(3, dtype=torch.long), items=torch.arange(3))
    with pytest.raises(ValueError, match="user 0 has interacted with every item"):
        NegativeSampler(positives, num_items=3).sample(
            torch.zeros(2, dtype=torch.long), torch.Generator()
        )


def test_users_without_positives_sample_every_item() -> None:
    positives = Interactions(users=torch.tensor([1]), items=torch.tensor([2]))
    sampler = NegativeSampler(positives, num_items=3)
    drawn = sampler.sample(torch.zeros(300, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1, 2}


def test_random_histories_never_yield_a_positive() -> None:
    generator = torch.Generator().manual_seed(3)
    users = torch.randint(0, 50, (600,), generator=generator)
    items = torch.randint(0, 40, (600,), generator=generator)
    sampler = NegativeSampler(Interactions(users=users, items=items), num_items=40)
    queries = torch.randint(0, 50, (20_000,), generator=generator)
    drawn = sampler.sample(queries, generator)
    positive = set(zip(users.tolist(), items.tolist(), strict=True))
    assert drawn.min() >= 0 and drawn.max() < 40
    assert not any(
        (u, i) in positive for u, i in zip(queries.tolist(), drawn.tolist(), strict=True)
    )
