import pyarrow as pa
import pytest

from data_pipeline.tiers import TierRule, build_vocab, tier_boundaries


def test_ids_ranked_by_count_with_ties_broken_by_raw_id() -> None:
    vocab, _ = build_vocab(pa.array([30, 10, 20, 40]), pa.array([5, 7, 5, 1]), TierRule((0.25,)))
    assert vocab["raw_id"].to_pylist() == [10, 20, 30, 40, None]
    assert vocab["id"].to_pylist() == [0, 1, 2, 3, 4]
    assert vocab["count"].to_pylist() == [7, 5, 5, 1, 0]


def test_ranking_does_not_depend_on_input_order() -> None:
    a, _ = build_vocab(pa.array(["b", "a", "c"]), pa.array([2, 2, 9]), TierRule((0.3,)))
    b, _ = build_vocab(pa.array(["c", "b", "a"]), pa.array([9, 2, 2]), TierRule((0.3,)))
    assert a.equals(b)
    assert a["raw_id"].to_pylist() == ["c", "a", "b", None]


def test_head_is_top_tenth_and_oov_is_in_the_lowest_tier() -> None:
    n = 25
    vocab, boundaries = build_vocab(pa.array(range(n)), pa.array(range(n, 0, -1)), TierRule())
    assert boundaries == [3]
    tiers = vocab["tier"].to_pylist()
    assert tiers[:3] == [0, 0, 0]  # ceil(0.1 * 25) = 3 head ids
    assert set(tiers[3:]) == {1}
    assert vocab["raw_id"][n].as_py() is None and tiers[n] == 1


def test_each_fraction_is_one_tiers_share_from_the_head_down() -> None:
    assert tier_boundaries(100, (0.1, 0.3)) == [10, 40]


def test_every_tier_keeps_at_least_one_id() -> None:
    assert tier_boundaries(3, (0.01, 0.01)) == [1, 2]


@pytest.mark.parametrize("fractions", [(0.0,), (1.0,), (0.6, 0.5)])
def test_invalid_fractions_are_rejected(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="tier_fractions"):
        tier_boundaries(10, fractions)


def test_tiers_by_minimum_training_count() -> None:
    counts = [50, 40, 12, 10, 9, 3, 1]
    rule = TierRule(min_counts=(40, 10))
    vocab, boundaries = build_vocab(pa.array(range(7)), pa.array(counts), rule)
    assert boundaries == [2, 4]  # >= 40: ids 0, 1; >= 10: ids 2, 3; the rest and OOV
    assert vocab["tier"].to_pylist() == [0, 0, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("min_counts", "message"),
    [((100,), "leave tier 0 empty"), ((10, 10), "strictly decreasing"), ((0,), ">= 1")],
)
def test_count_tiers_that_cannot_be_cut_are_rejected(
    min_counts: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_vocab(pa.array([1, 2]), pa.array([5, 3]), TierRule(min_counts=min_counts), "items")
