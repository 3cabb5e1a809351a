"""Full-ranking evaluation: HR@k and NDCG@k against every item, seen items masked.

For each user the held-out target is ranked against all candidate items except those the
user already interacted with in the masked splits (the target itself stays a candidate).
Ties count against the target (rank = number of other candidates scoring >= the target), so
a model that cannot tell items apart, such as one whose items share codes, gets no credit for
lucky tie-breaking. A target that is not a candidate (the OOV id) counts as a miss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mgqe_dist.progress import Progress

# Seconds between progress lines of an evaluation whose output is not a terminal.
EVAL_LINE_SECONDS = 30.0


@dataclass(frozen=True)
class RankingResult:
    """Mean HR@k and NDCG@k (fractions in [0, 1]) over `users` evaluated users."""

    k: int
    hr: float
    ndcg: float
    users: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Metrics keyed like `valid_hr@10`."""
        return {f"{prefix}hr@{self.k}": self.hr, f"{prefix}ndcg@{self.k}": self.ndcg}


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among unmasked columns; ties count against it.

    scores (U, I), targets (U,), masked (U, I) bool of non-candidates. The target is always a
    candidate, even where `masked` marks it (it was also seen in a masked split): masking it
    would make it unreachable. A target out of range gets rank I (never a hit).
    """
    num_items = scores.shape[1]
    valid = (targets >= 0) & (targets < num_items)
    safe = targets.clamp(0, num_items - 1)
    competitors = ~masked
    competitors[torch.arange(len(targets)), safe] = False  # the target does not compete with itself
    target_score = scores.gather(1, safe[:, None])
    ahead = ((scores >= target_score) & competitors).sum(1)
    return torch.where(valid, ahead, torch.full_like(ahead, num_items))


def hr_ndcg(ranks: torch.Tensor, k: int) -> tuple[float, float]:
    """Mean hit rate and NDCG at k from 0-based ranks."""
    hits = ranks < k
    gains = torch.where(
        hits, 1.0 / torch.log2(ranks.double() + 2), torch.zeros((), dtype=torch.double)
    )
    return hits.double().mean().item(), gains.mean().item()


def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    users: torch.Tensor,
    targets: torch.Tensor,
    seen: tuple[torch.Tensor, torch.Tensor],
    num_candidates: int,
    k: int = 10,
    user_batch_size: int = 1024,
    label: str = "evaluating",
) -> RankingResult:
    """Rank `targets` for `users` in batches.

    score_fn maps user ids (B,) to scores over all candidate items (B, num_candidates); `seen`
    is (user_ids, item_ids) of interactions to mask; items >= num_candidates (OOV) never rank.
    Progress over users, named `label`, is a bar on a terminal and otherwise a line every
    EVAL_LINE_SECONDS (an evaluation shorter than that prints nothing).
    """
    if len(users) != len(targets):
        raise ValueError(f"{len(users)} users but {len(targets)} targets")
    seen_users, seen_items = seen
    order = torch.argsort(seen_users)
    seen_users, seen_items = seen_users[order], seen_items[order]
    ranks = []
    progress = Progress(len(users), label, "users", every_seconds=EVAL_LINE_SECONDS)
    for start in range(0, len(users), user_batch_size):
        batch = users[start : start + user_batch_size]
        masked = _seen_mask(batch, seen_users, seen_items, num_candidates)
        with torch.no_grad():
            scores = score_fn(batch)
        ranks.append(target_ranks(scores, targets[start : start + user_batch_size], masked))
        progress.advance(len(batch))
    progress.close()
    all_ranks = torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.long)
    hr, ndcg = hr_ndcg(all_ranks, k) if len(all_ranks) else (math.nan, math.nan)
    return RankingResult(k=k, hr=hr, ndcg=ndcg, users=len(all_ranks))


def _seen_mask(
    batch: torch.Tensor, seen_users: torch.Tensor, seen_items: torch.Tensor, num_candidates: int
) -> torch.Tensor:
    """(B, num_candidates) mask of items each batch user has seen; seen_users must be sorted."""
    lo = torch.searchsorted(seen_users, batch)
    hi = torch.searchsorted(seen_users, batch, right=True)
    counts = hi - lo
    rows = torch.repeat_interleave(torch.arange(len(batch)), counts)
    offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        counts.cumsum(0) - counts, counts
    )
    items = seen_items[torch.repeat_interleave(lo, counts) + offsets]
    mask = torch.zeros(len(batch), num_candidates, dtype=torch.bool)
    keep = items < num_candidates
    mask[rows[keep], items[keep]] = True
    return mask
