"""Claims are judged from the results by one rule: the difference against 2 standard errors."""

import math

import pytest

from mgqe_dist.report.claims import (
    FAILS,
    HOLDS,
    NOISE,
    PENDING,
    combine,
    interpolate,
    paper_claims,
    verdict,
)
from mgqe_dist.report.experiment import Experiment, Series, Study
from mgqe_dist.report.results import Summary


def _experiment(**extra) -> Experiment:
    return Experiment(
        name="x",
        seeds=(0, 1, 2),
        studies=(
            Study("gmf", "GMF", "job.toml", ("hr@10", "ndcg@10")),
            Study("ratings", "ratings", "job.toml", ("rmse",), lower_is_better=True),
        ),
        variants={"FE": (), "LRF": (), "MGQE": (), "MGQE D=8": ()},
        tables=(),
        **extra,
    )


def _runs(study: str, variant: str, metric: str, values: list[float], **more) -> list[dict]:
    return [
        {"study": study, "variant": variant, "seed": seed, metric: value, **more}
        for seed, value in enumerate(values)
    ]


def _claim(claims, start: str):
    return next(c for c in claims if c.text.startswith(start))


@pytest.mark.parametrize(
    ("difference", "kind", "expected"),
    [
        (0.5, "beats", HOLDS),
        (0.1, "beats", NOISE),
        (-0.5, "beats", FAILS),
        (0.1, "matches", HOLDS),
        (-0.1, "matches", HOLDS),
        (-0.5, "matches", FAILS),
        (-0.5, "drops", HOLDS),
        (0.1, "drops", NOISE),
        (0.5, "drops", FAILS),
        (math.nan, "beats", PENDING),
    ],
)
def test_verdict_compares_the_difference_with_two_standard_errors(
    difference: float, kind: str, expected: str
) -> None:
    assert verdict(difference, 0.1, kind) == expected


def test_a_claim_fails_if_any_check_fails_and_holds_only_if_all_hold() -> None:
    assert combine([HOLDS, HOLDS, PENDING]) == HOLDS
    assert combine([HOLDS, NOISE]) == NOISE
    assert combine([HOLDS, NOISE, FAILS]) == FAILS
    assert combine([PENDING, PENDING]) == PENDING


def test_claims_are_judged_from_the_runs() -> None:
    runs = (
        _runs("gmf", "FE", "hr@10", [0.070, 0.071, 0.072])
        + _runs("gmf", "MGQE", "hr@10", [0.080, 0.081, 0.082])  # +1.0 points
        + _runs("gmf", "LRF", "hr@10", [0.0705, 0.0715, 0.0725])  # +0.05: no drop
        + _runs("ratings", "FE", "rmse", [0.90, 0.91, 0.92])
        + _runs("ratings", "MGQE", "rmse", [0.95])  # one seed: no standard error
    )
    claims = paper_claims(_experiment(), {"runs": runs})
    matches = _claim(claims, "MGQE matches or beats")
    assert [c.verdict for c in matches.checks] == [HOLDS, PENDING]  # hr@10; ndcg@10 has no runs
    assert matches.checks[0].ours.endswith("+1.00 ± 0.08")  # se 0.1 / sqrt(3), twice
    assert _claim(claims, "LRF has").checks[0].verdict == NOISE
    regression = _claim(claims, "On regression, DPQ and MGQE")
    assert [c.verdict for c in regression.checks] == [PENDING] and regression.verdict == PENDING


def test_lower_rmse_is_better() -> None:
    runs = _runs("ratings", "FE", "rmse", [0.90, 0.91, 0.92]) + _runs(
        "ratings", "MGQE", "rmse", [0.85, 0.86, 0.87]
    )
    claim = _claim(paper_claims(_experiment(), {"runs": runs}), "On regression, DPQ and MGQE")
    assert claim.verdict == HOLDS


def test_equal_size_compares_mgqe_interpolated_at_the_other_methods_sizes() -> None:
    exp = _experiment(
        size_series=(Series("FE (d)", ("FE",)), Series("MGQE (D)", ("MGQE D=8", "MGQE"))),
        size_studies=("gmf",),
        size_seeds=(0, 1, 2),
    )
    bits = {"FE": 1000, "MGQE D=8": 100, "MGQE": 2000}  # FE's size lies inside MGQE's range
    runs = []
    for variant, values in [
        ("FE", [0.07, 0.071, 0.072]),
        ("MGQE D=8", [0.06, 0.061, 0.062]),
        ("MGQE", [0.09, 0.091, 0.092]),
    ]:
        runs += _runs("gmf", variant, "hr@10", values, model_size_bits=bits[variant])
    claim = _claim(paper_claims(exp, {"runs": runs}), "At the same model size")
    # At FE's size (100%) MGQE's curve is 0.06 + (0.03) * log(10)/log(20) ~ 0.0832 > 0.071.
    assert claim.checks[0].verdict == HOLDS and "100.0%: +" in claim.checks[0].ours


def test_interpolate_is_linear_in_log_size() -> None:
    curve = [(10.0, Summary(1.0, 0.0, 2)), (1000.0, Summary(3.0, 0.0, 2))]
    assert interpolate(curve, 100.0).mean == pytest.approx(2.0)
    assert interpolate(curve, 5.0) is None and interpolate(curve, 2000.0) is None


def test_loss_claim_uses_the_relative_gap_of_the_mean_curves() -> None:
    exp = _experiment(loss_studies=("gmf",), loss_variants=("FE", "MGQE"))

    def history(scale: float) -> list[dict]:
        return [
            {
                "epoch": e,
                "steps": 10,
                "loss": scale / e,
                "loss_curve": [[5, scale / e], [10, scale / e]],
            }
            for e in (1, 2, 3)
        ]

    close = [
        {"study": "gmf", "variant": v, "seed": 0, "history": history(s)}
        for v, s in (("FE", 1.0), ("MGQE", 1.03))
    ]
    far = [{**close[0]}, {**close[1], "history": history(1.2)}]
    assert _claim(paper_claims(exp, {"runs": close}), "MGQE's training loss").verdict == HOLDS
    assert _claim(paper_claims(exp, {"runs": far}), "MGQE's training loss").verdict == FAILS


def test_genre_claim_reads_the_code_matrices_of_every_seed() -> None:
    exp = _experiment(code_study="gmf", code_variants=("SQ", "MGQE"), genres=("a", "b"))
    sq = [[10.0, 9.9], [9.9, 10.0]]
    mgqe = [[8.0, 2.0], [2.0, 8.0]]
    runs = {
        f"{variant}|{seed}": {
            "variant": variant,
            "seed": seed,
            "matrix": [[v + 0.1 * seed for v in row] for row in m],
        }
        for variant, m in (("SQ", sq), ("MGQE", mgqe))
        for seed in (0, 1, 2)
    }
    claim = _claim(paper_claims(exp, {"runs": [], "code_figure": {"runs": runs}}), "Codes separate")
    verdicts = {c.what: c.verdict for c in claim.checks}
    assert verdicts["MGQE: diagonal / off-diagonal"] == HOLDS
    assert verdicts["off-diagonal shared positions: MGQE vs SQ"] == HOLDS
    assert verdicts["ratio: MGQE vs SQ"] == HOLDS
