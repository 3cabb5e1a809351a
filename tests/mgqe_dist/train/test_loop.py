import pytest
import torch

from mgqe_dist.config import TrainConfig
from mgqe_dist.embeddings import build_embedding
from mgqe_dist.models import build_model
from mgqe_dist.train.data import Interactions
from mgqe_dist.train.loop import LOSS_CURVE_POINTS, train_epochs
from mgqe_dist.train.objectives import SampledLogLoss

TRAIN = Interactions(users=torch.arange(20) % 5, items=torch.arange(20) % 8)
LOSS = SampledLogLoss(TRAIN, 8, num_negatives=4)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        "gmf", {"users": build_embedding("full", 5, 4), "items": build_embedding("full", 8, 4)}
    )


def test_stops_after_patience_and_restores_best_weights() -> None:
    model = _model()
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.1, 0.9])
    weights_at: dict[int, torch.Tensor] = {}

    def validate() -> dict[str, float]:
        weights_at[len(weights_at) + 1] = model.predict.weight.detach().clone()
        return {"valid_ndcg@10": next(scores)}

    cfg = TrainConfig(epochs=6, batch_size=8, early_stopping_patience=3, progress_updates=0)
    result = train_epochs(model, LOSS, cfg, 0, validate, select_by="valid_ndcg@10")
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    assert result.best_epoch == 2 and result.stopped_early
    torch.testing.assert_close(model.predict.weight, weights_at[2])
    assert not torch.equal(weights_at[2], weights_at[5])


def test_patience_zero_runs_every_epoch() -> None:
    model = _model()
    cfg = TrainConfig(epochs=4, batch_size=8, early_stopping_patience=0, progress_updates=0)
    scores = iter([0.5, 0.1, 0.1, 0.1])
    result = train_epochs(model, LOSS, cfg, 0, lambda: {"v": next(scores)}, select_by="v")
    assert len(result.history) == 4 and result.best_epoch == 1 and not result.stopped_early


def test_same_seed_same_losses() -> None:
    cfg = TrainConfig(epochs=2, batch_size=8, progress_updates=0)
    runs = [
        train_epochs(_model(), LOSS, cfg, 7, lambda: {"v": 0.0}, select_by="v").history
        for _ in range(2)
    ]
    assert [r["loss"] for r in runs[0]] == [r["loss"] for r in runs[1]]


def test_loss_curve_windows_cover_the_epoch_and_average_to_its_loss() -> None:
    # 20 rows x 5 samples each (1 positive + 4 negatives) at batch 2: 50 steps per epoch.
    cfg = TrainConfig(epochs=2, batch_size=2, progress_updates=0)
    history = train_epochs(_model(), LOSS, cfg, 0, lambda: {"v": 0.0}, select_by="v").history
    for record in history:
        steps = [int(step) for step, _ in record["loss_curve"]]
        assert steps[-1] == record["steps"] and steps == sorted(set(steps))
        assert len(steps) <= LOSS_CURVE_POINTS
        widths = torch.diff(torch.tensor([0, *steps])).double()
        means = torch.tensor([loss for _, loss in record["loss_curve"]]).double()
        assert abs(float((widths * means).sum() / widths.sum()) - record["loss"]) < 1e-4


def test_progress_lines_per_epoch_when_output_is_not_a_terminal(
    capsys: pytest.CaptureFixture,
) -> None:
    cfg = TrainConfig(epochs=2, batch_size=8, progress_updates=2)
    train_epochs(_model(), LOSS, cfg, 0, lambda: {"v": 0.5}, select_by="v")
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    # 20 positives x (1 + 4 negatives) = 100 samples an epoch, in batches of 8.
    progress = [line for line in lines if line.startswith("  epoch 1/2: ")]
    assert [line.split(",")[0] for line in progress] == [
        "  epoch 1/2: 40/100 samples (40%)",
        "  epoch 1/2: 72/100 samples (72%)",
    ]
    assert all(", loss " in line and "samples/s" in line for line in progress)
    assert [line.split(" loss")[0] for line in lines if not line.startswith("  ")] == [
        "epoch 1/2",
        "epoch 2/2",
    ]


def test_progress_bar_on_a_terminal(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mgqe_dist.progress.is_terminal", lambda file: True)
    cfg = TrainConfig(epochs=1, batch_size=8, progress_updates=2)
    train_epochs(_model(), LOSS, cfg, 0, lambda: {"v": 0.5}, select_by="v")
    out = capsys.readouterr().out
    assert "\repoch 1/1:" in out and "samples/s" in out  # drawn in place
    assert "  epoch 1/1: " not in out  # no plain progress lines
    assert out.splitlines()[-1].startswith("epoch 1/1 loss ")  # the summary stays


def test_no_progress_with_zero_updates(capsys: pytest.CaptureFixture) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, progress_updates=0)
    train_epochs(_model(), LOSS, cfg, 0, lambda: {"v": 0.5}, select_by="v")
    assert capsys.readouterr().out.splitlines()[0].startswith("epoch 1/1 loss ")
