"""Regression and next-item (SASRec) training end to end on tiny prepared data (real Ray
prepare), plus the pieces they rely on: targets, histories and next-item negatives."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from data_pipeline.prepare import prepare
from mgqe_dist.config import load_job
from mgqe_dist.train.data import load_histories, load_prepared
from mgqe_dist.train.objectives import NextItemLogLoss
from mgqe_dist.train.run import train_job
from tests.conftest import TINY_JOB, write_job

REGRESSION = TINY_JOB.replace(
    'prepared_dir = "{root}/prepared"',
    'prepared_dir = "{root}/prepared"\nsplit = "random"\nrandom_fractions = [0.9, 0.0, 0.1]',
).replace("epochs = 2", 'epochs = 5\nloss = "squared"\nlearning_rate = 0.02')
SEQUENCES = TINY_JOB.replace(
    'prepared_dir = "{root}/prepared"', 'prepared_dir = "{root}/prepared"\nsequence_length = 11'
).replace("[embedding]", '[model]\nname = "sasrec"\n\n[embedding]')


def _prepared(tmp_path: Path, text: str, overrides: list[str] | None = None):
    job = load_job(write_job(tmp_path, text), overrides)
    prepare(job.data, job.seed)
    return job


def test_squared_loss_learns_ratings(tmp_path: Path) -> None:
    job = _prepared(tmp_path, REGRESSION, ["embedding.kind=full"])
    metrics = train_job(job)
    # Ratings are 1..5: a model that learned nothing predicts ~0 and is off by ~3.7.
    ratings = pq.read_table(Path(job.data.prepared_dir) / "test.parquet")["rating"].to_numpy()
    assert metrics["rmse"] < 1.5 < float(np.sqrt(np.mean(ratings**2)))
    assert metrics["rows"] == load_prepared(job.data.prepared_dir).stats["rows"]["test"]
    assert "valid_rmse" not in metrics and metrics["best_epoch"] == 5  # no validation split
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]


def test_missing_target_column_is_named(tmp_path: Path) -> None:
    job = _prepared(tmp_path, REGRESSION, ["train.target=score"])
    with pytest.raises(ValueError, match="no target column 'score'"):
        train_job(job)


def test_histories_are_left_padded_latest_items(tmp_path: Path) -> None:
    job = _prepared(tmp_path, SEQUENCES)
    data = load_prepared(job.data.prepared_dir)
    histories = load_histories(data, 12)
    assert histories.shape == (data.num_users, 12)
    assert (histories[:, 0] == -1).all()  # 11 items stored, one column of padding
    user = int(data.train.users[0])
    seen = set(data.train.items[data.train.users == user].tolist())
    row = histories[user][histories[user] >= 0].tolist()
    assert row and set(row) <= seen


def test_next_item_negatives_are_unseen(tmp_path: Path) -> None:
    job = _prepared(tmp_path, SEQUENCES)
    data = load_prepared(job.data.prepared_dir)
    loss = NextItemLogLoss(load_histories(data, 12), data.train, data.num_known_items)
    _, _, negatives = loss.epoch_samples(torch.Generator().manual_seed(0))
    for user in range(0, data.num_users, 17):
        seen = set(data.train.items[data.train.users == user].tolist())
        assert not seen & set(negatives[user].tolist())


def test_sasrec_trains_and_ranks_every_test_user(tmp_path: Path) -> None:
    job = _prepared(tmp_path, SEQUENCES, ["train.epochs=3", "train.batch_size=32"])
    metrics = train_job(job)
    data = load_prepared(job.data.prepared_dir)
    assert metrics["evaluated_users"] == len(data.test)
    assert 0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["size_pct_of_full"] < 100  # MGQE item table


def test_sequence_model_without_sequences_is_an_error(tmp_path: Path) -> None:
    job = _prepared(tmp_path, SEQUENCES, ["data.sequence_length=0"])
    with pytest.raises(ValueError, match=r"sequences\.parquet not found"):
        train_job(job)
