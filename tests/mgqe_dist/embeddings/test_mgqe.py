import math

import pytest
import torch

from mgqe_dist.embeddings import MGQEEmbedding, build_embedding, mgqe
from mgqe_dist.embeddings.mgqe import _nearest, _nearest_torch


def _mgqe(**options) -> MGQEEmbedding:
    torch.manual_seed(0)
    defaults = dict(tier_boundaries=[10], num_subspaces=4, num_centroids=[8, 2], init_std=1.0)
    return build_embedding("mgqe", 50, 8, **{**defaults, **options})


def test_output_shape_follows_ids_shape() -> None:
    table = _mgqe()
    assert table(torch.tensor([[1, 2, 3], [40, 41, 49]])).shape == (2, 3, 8)


def test_forward_value_is_the_selected_centroids() -> None:
    table = _mgqe()
    ids = torch.tensor([0, 5, 11, 49])
    codes = table.codes(ids)
    book = table.codebooks[0]
    expected = torch.stack([book[torch.arange(4), c].reshape(-1) for c in codes])
    torch.testing.assert_close(table(ids), expected)


def test_codes_match_brute_force_nearest_centroid() -> None:
    table = _mgqe()
    ids = torch.arange(50)
    e = table.query.detach().view(50, 4, 2)
    book = table.codebooks[0].detach()
    for tier, (lo, hi) in enumerate([(0, 10), (10, 50)]):
        k = table.centroids_per_tier[tier]
        dist = (e[lo:hi, :, None, :] - book[None, :, :k, :]).pow(2).sum(-1)
        assert torch.equal(table.codes(ids)[lo:hi], dist.argmin(-1))


def test_tail_ids_never_use_head_centroids() -> None:
    table = _mgqe(num_centroids=[8, 2])
    codes = table.codes(torch.arange(50))
    assert codes[10:].max() < 2
    assert codes[:10].max() >= 2  # the head does use its larger codebook


def test_ste_sends_task_gradient_to_queries_and_centroid_loss_to_centroids() -> None:
    table = _mgqe()
    ids = torch.tensor([1, 20, 20, 33])
    out = table(ids)
    out.sum().backward(retain_graph=True)
    # Straight-through: d(sum)/d(query) is 1 per use of the id; centroids get nothing from it.
    expected = torch.zeros_like(table.query)
    expected[[1, 20, 33]] = torch.tensor([1.0, 2.0, 1.0])[:, None]
    torch.testing.assert_close(table.query.grad, expected)
    assert table.codebooks[0].grad is None or not table.codebooks[0].grad.any()

    table.query.grad = None
    table.extra_loss().backward()
    assert table.codebooks[0].grad.abs().sum() > 0
    assert table.query.grad is None or not table.query.grad.any()  # commitment weight is 0


def test_centroid_loss_pulls_centroids_to_queries() -> None:
    table = _mgqe()
    ids = torch.arange(50)
    optimizer = torch.optim.SGD(table.codebooks.parameters(), lr=5.0)
    table(ids)
    first = table.extra_loss()
    for _ in range(20):
        optimizer.zero_grad()
        table(ids)
        table.extra_loss().backward()
        optimizer.step()
    table(ids)
    # 8 and 2 centroids for 50 random queries: k-means cannot get far below half the start.
    assert table.extra_loss() < 0.6 * first


def test_extra_loss_resets_after_reading() -> None:
    table = _mgqe()
    table(torch.tensor([1, 2]))
    assert table.extra_loss() > 0
    assert table.extra_loss() == 0


def test_no_centroid_loss_is_recorded_without_grad() -> None:
    table = _mgqe()
    with torch.no_grad():
        table(torch.tensor([1, 2]))
    assert table.extra_loss() == 0


def test_serving_bits_closed_form_shared() -> None:
    table = build_embedding(
        "mgqe", 1000, 64, tier_boundaries=[100], num_subspaces=64, num_centroids=[256, 64]
    )
    codes = 100 * 64 * 8 + 900 * 64 * 6
    centroids = 256 * 64 * 32
    assert table.serving_bits() == codes + centroids


def test_serving_bits_closed_form_unshared() -> None:
    table = build_embedding(
        "mgqe",
        1000,
        64,
        tier_boundaries=[100],
        num_subspaces=64,
        num_centroids=[256, 64],
        shared_centroids=False,
    )
    assert table.serving_bits() == 100 * 64 * 8 + 900 * 64 * 6 + (256 + 64) * 64 * 32


def test_dpq_is_one_tier_with_all_centroids() -> None:
    table = build_embedding("dpq", 1000, 64, num_subspaces=16, num_centroids=256)
    assert table.tier_sizes() == [1000]
    assert table.serving_bits() == 1000 * 16 * 8 + 256 * 64 * 32


def test_scalar_search_equals_dense_search() -> None:
    torch.manual_seed(1)
    e = torch.randn(300, 16, 1)
    book = torch.randn(16, 64, 1)
    dense = (e[:, :, None, :] - book[None]).pow(2).sum(-1).argmin(-1)
    assert torch.equal(_nearest(e, book), dense)


@pytest.mark.parametrize(
    ("rows", "dims", "k", "width"),
    [
        (500, 64, 256, 1),
        (300, 16, 64, 1),
        (7, 3, 1, 1),
        (0, 4, 5, 1),
        (400, 32, 256, 2),
        (200, 8, 64, 3),
        (50, 4, 7, 8),
    ],
)
def test_compiled_search_finds_a_nearest_centroid_like_torch(
    rows: int, dims: int, k: int, width: int
) -> None:
    torch.manual_seed(3)
    e = torch.randn(rows, dims, width)
    book = torch.randn(dims, k, width)
    book[0, -1] = book[0, 0]  # two equal centroids: the lower index wins, as in torch.argmin
    if rows:
        e[0, 0] = book[0, k // 2]  # a value exactly on a centroid
    distance = (e[:, :, None, :] - book[None]).pow(2).sum(-1)
    codes = _nearest(e, book)
    assert torch.equal(distance.gather(2, codes[..., None])[..., 0], distance.min(-1).values)
    if width > 1:  # the first of equal distances, as argmin
        assert torch.equal(codes, distance.argmin(-1))
    else:  # the same codes as the midpoint search in torch ops (a value exactly halfway
        # between two centroids goes to the lower one, whatever their indices)
        assert torch.equal(codes, _nearest_torch(e, book))
        assert (codes[:, 0] != k - 1).all() or k == 1  # the duplicate is never chosen
    e[:, 0], e[:, 1 % dims] = math.nan, math.inf  # values a diverged query can hold
    e[:, 2 % dims, 0] = -math.inf
    codes = _nearest(e, book)
    assert ((codes >= 0) & (codes < k)).all()
    if width == 1:  # where the midpoint search in torch ops puts them
        assert torch.equal(codes, _nearest_torch(e, book))


@pytest.mark.parametrize("width", [1, 2, 16])  # C kernel (grid, sorted search), torch ops
def test_centroid_loss_value_and_gradient_equal_autograd_through_the_chosen_centroids(
    width: int,
) -> None:
    torch.manual_seed(4)
    e = torch.randn(40, 4, width)
    book = torch.randn(4, 8, width, requires_grad=True)
    weight = torch.randint(1, 4, (40,)).float()
    found = mgqe._assign(e, book.detach(), weight)
    loss = mgqe._centroid_loss(found, book)
    (grad,) = torch.autograd.grad(loss, book)
    chosen = book[torch.arange(4), found.codes]  # (40, 4, width), differentiable
    reference = ((e - chosen).pow(2).sum((1, 2)) * weight).sum()
    (expected,) = torch.autograd.grad(reference, book)
    torch.testing.assert_close(loss, reference.detach())
    torch.testing.assert_close(grad, expected)


def test_compiled_search_kernel_is_built() -> None:
    assert mgqe._search is not None, "the C kernel was not built: run scripts/setup_env.sh"


def test_centroid_loss_is_a_mean_over_occurrences() -> None:
    table = _mgqe()
    ids = torch.tensor([3, 3, 3, 40])
    e = table.query.detach()[ids].view(4, 4, 2)
    with torch.no_grad():  # the value without autograd is the chosen centroids; no loss kept
        chosen = table(ids).view(4, 4, 2)
    table(ids)
    torch.testing.assert_close(table.extra_loss(), (e - chosen).pow(2).mean())


def test_lookup_of_repeated_rows_equals_the_table_forward() -> None:
    """The collection path (one row per occurrence) and the table (one row per distinct id)
    give the same values, the same centroid loss and the same query gradient."""
    table = _mgqe()
    ids = torch.tensor([30, 3, 3, 49, 3, 0])
    expected = table(ids)
    loss = table.extra_loss()
    (expected.pow(2).sum() + loss).backward()
    grads = table.query.grad.clone(), table.codebooks[0].grad.clone()
    table.zero_grad()
    out = table.quantize(ids, table.query[ids])
    torch.testing.assert_close(out, expected.detach())
    torch.testing.assert_close(table.extra_loss(), loss.detach())
    out = table.quantize(ids, table.query[ids])
    (out.pow(2).sum() + table.extra_loss()).backward()
    torch.testing.assert_close(table.query.grad, grads[0])
    torch.testing.assert_close(table.codebooks[0].grad, grads[1])


def test_training_forward_is_exactly_the_served_value() -> None:
    """With autograd on, both lookups return the centroids themselves (the straight-through
    gradient is added in backward), bit-identical to the value without autograd."""
    table = _mgqe()
    ids = torch.tensor([30, 3, 3, 49, 0, 12])
    with torch.no_grad():
        served = table(ids)
    assert torch.equal(table(ids), served)
    assert torch.equal(table.quantize(ids, table.query[ids]), served)


def test_duplicate_ids_get_identical_rows() -> None:
    table = _mgqe()
    out = table(torch.tensor([7, 30, 7, 30]))
    torch.testing.assert_close(out[0], out[2])
    torch.testing.assert_close(out[1], out[3])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(tier_boundaries=[60]), "tier_boundaries"),
        (dict(tier_boundaries=[10], num_subspaces=4, num_centroids=[2, 8]), "non-increasing"),
        (dict(tier_boundaries=[10], num_subspaces=3), "not divisible"),
        (
            dict(tier_boundaries=[10, 20], num_subspaces=4, num_centroids=[8, 4]),
            "2 entries for 3 tiers",
        ),
    ],
)
def test_bad_options_are_rejected_with_a_reason(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_embedding("mgqe", 50, 8, **options)


def test_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown option.*'num_centriods'"):
        build_embedding("mgqe", 50, 8, num_centriods=4)


def test_code_bits_use_ceil_log2() -> None:
    table = build_embedding(
        "mgqe", 20, 8, tier_boundaries=[5], num_subspaces=2, num_centroids=[5, 3]
    )
    assert table.serving_bits() == 5 * 2 * math.ceil(math.log2(5)) + 15 * 2 * 2 + 5 * 8 * 32


def test_variable_d_tiers_have_own_codebooks_shapes_and_gradients() -> None:
    table = build_embedding(
        "mgqe",
        50,
        8,
        tier_boundaries=[10],
        num_subspaces=[4, 2],
        num_centroids=8,
        shared_centroids=False,
    )
    ids = torch.tensor([0, 9, 10, 49])
    out = table(ids)
    assert out.shape == (4, 8)
    codes = table.codes(ids)
    assert codes.shape == (4, 4)
    assert (codes[2:, 2:] == -1).all() and (codes[:2] >= 0).all()
    (out.sum() + table.extra_loss()).backward()
    assert table.query.grad[[0, 9, 10, 49]].abs().sum(1).gt(0).all()
    assert all(book.grad.abs().sum() > 0 for book in table.codebooks)


def test_unshared_tiers_search_only_their_own_codebook() -> None:
    table = build_embedding(
        "mgqe",
        50,
        8,
        tier_boundaries=[10],
        num_subspaces=4,
        num_centroids=[8, 2],
        shared_centroids=False,
        init_std=1.0,
    )
    ids = torch.tensor([12, 40])
    book = table.codebooks[1]
    expected = torch.stack([book[torch.arange(4), c].reshape(-1) for c in table.codes(ids)])
    torch.testing.assert_close(table(ids), expected)


def test_search_over_several_chunks_equals_dense_search() -> None:
    torch.manual_seed(2)
    e = torch.randn(600, 16, 2)  # CPU chunks hold 256 rows here: two full and one partial
    book = torch.randn(16, 64, 2)
    dense = (e[:, :, None, :] - book[None]).pow(2).sum(-1).argmin(-1)
    assert torch.equal(_nearest(e, book), dense)
    assert _nearest(e[:0], book).shape == (0, 16)
