import torch

from mgqe_dist.embeddings import build_embedding
from mgqe_dist.models import build_model
from mgqe_dist.size import dense_parameter_count, full_embedding_model_bits, model_serving_bits


def test_gmf_size_counts_tables_and_dense_layer() -> None:
    users = build_embedding("full", 100, 8)
    items = build_embedding(
        "mgqe", 50, 8, tier_boundaries=[5], num_subspaces=4, num_centroids=[16, 4]
    )
    model = build_model("gmf", {"users": users, "items": items})
    dense = 8 + 1  # prediction layer weight + bias
    assert dense_parameter_count(model) == dense
    assert model_serving_bits(model) == 100 * 8 * 32 + items.serving_bits() + dense * 32
    assert full_embedding_model_bits(model) == (100 + 50) * 8 * 32 + dense * 32


def test_query_table_is_not_served() -> None:
    items = build_embedding("mgqe", 1000, 64, tier_boundaries=[100])
    model = build_model("gmf", {"users": build_embedding("full", 10, 64), "items": items})
    # The 1000 x 64 query table is training-only state: it must not count as dense weights.
    assert dense_parameter_count(model) == 65
    assert model_serving_bits(model) < full_embedding_model_bits(model)
    assert torch.is_tensor(items.query)
