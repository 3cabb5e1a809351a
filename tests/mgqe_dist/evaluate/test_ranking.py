import math

import pytest
import torch

from mgqe_dist.evaluate.ranking import evaluate_ranking, hr_ndcg, target_ranks


def test_rank_counts_higher_scored_unmasked_items() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3]])
    masked = torch.tensor([[True, False, False, False, False]])  # item 0 was seen in training
    # Target item 2 (0.5): only item 3 (0.7) is ahead once item 0 is masked.
    assert target_ranks(scores, torch.tensor([2]), masked).tolist() == [1]


def test_ties_count_against_the_target() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1]])
    masked = torch.zeros(1, 4, dtype=torch.bool)
    assert target_ranks(scores, torch.tensor([0]), masked).tolist() == [2]


def test_target_seen_elsewhere_is_still_a_candidate() -> None:
    scores = torch.tensor([[0.1, 0.9]])
    # Item 1 is the target and was also seen in a masked split: it still ranks, first here.
    masked = torch.tensor([[True, True]])
    assert target_ranks(scores, torch.tensor([1]), masked).tolist() == [0]
    # Item 0 is the target, marked seen; item 1 scores higher but is masked.
    assert target_ranks(scores, torch.tensor([0]), masked).tolist() == [0]
    # Unmasked, item 1 is ahead of target item 0.
    unmasked = torch.tensor([[True, False]])
    assert target_ranks(scores, torch.tensor([0]), unmasked).tolist() == [1]


def test_out_of_range_target_is_a_miss() -> None:
    scores = torch.tensor([[0.1, 0.9]])
    ranks = target_ranks(scores, torch.tensor([2]), torch.zeros(1, 2, dtype=torch.bool))
    assert ranks.tolist() == [2]


def test_hr_and_ndcg_by_hand() -> None:
    ranks = torch.tensor([0, 1, 3, 10])
    hr, ndcg = hr_ndcg(ranks, k=10)
    assert hr == pytest.approx(3 / 4)
    assert ndcg == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    hr2, ndcg2 = hr_ndcg(ranks, k=2)
    assert hr2 == pytest.approx(2 / 4)
    assert ndcg2 == pytest.approx((1 + 1 / math.log2(3)) / 4)


def test_evaluate_masks_each_users_own_history() -> None:
    # Two users, four items; every user scores items in the same order 3 > 2 > 1 > 0.
    def score(users: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0, 2.0, 3.0]]).expand(len(users), 4)

    users = torch.tensor([0, 1])
    targets = torch.tensor([2, 1])
    seen = (torch.tensor([1, 0, 1]), torch.tensor([3, 3, 2]))  # user 0 saw 3; user 1 saw 3, 2
    result = evaluate_ranking(score, users, targets, seen, num_candidates=4, k=1, user_batch_size=1)
    assert result.hr == 1.0  # both targets top once their seen items are masked
    assert result.users == 2
    unmasked = evaluate_ranking(
        score,
        users,
        targets,
        (torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)),
        num_candidates=4,
        k=1,
    )
    assert unmasked.hr == 0.0


def test_seen_items_beyond_candidates_are_ignored() -> None:
    def score(users: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0]]).expand(len(users), 2)

    result = evaluate_ranking(
        score,
        torch.tensor([0]),
        torch.tensor([0]),
        (torch.tensor([0]), torch.tensor([5])),
        num_candidates=2,
        k=1,
    )
    assert result.hr == 1.0
