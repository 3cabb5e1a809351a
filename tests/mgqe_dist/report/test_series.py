"""Fig. 7's curves: global steps run on across epochs; seeds are averaged where all have points."""

from mgqe_dist.report.series import loss_curve_mean, run_loss_curve


def _run(seed: int, losses: list[float], steps: int = 10) -> dict:
    history = [
        {"epoch": e, "steps": steps, "loss": loss, "loss_curve": [[5, loss + 0.1], [steps, loss]]}
        for e, loss in enumerate(losses, start=1)
    ]
    return {"study": "gmf", "variant": "FE", "seed": seed, "history": history}


def test_global_step_adds_the_steps_of_earlier_epochs() -> None:
    assert run_loss_curve(_run(0, [0.6, 0.4])) == [(5, 0.7), (10, 0.6), (15, 0.5), (20, 0.4)]


def test_runs_without_step_counts_have_no_curve() -> None:
    assert run_loss_curve({"history": [{"epoch": 1, "loss": 0.5}]}) == []


def test_mean_curve_stops_where_the_shortest_seed_stops() -> None:
    results = {"runs": [_run(0, [0.6, 0.4]), _run(1, [0.8])]}  # seed 1 stopped after epoch 1
    curve = loss_curve_mean(results, "gmf", "FE")
    assert curve.seeds == 2 and curve.first_epoch_steps == 10
    assert curve.curve == {5: 0.8, 10: 0.7}
