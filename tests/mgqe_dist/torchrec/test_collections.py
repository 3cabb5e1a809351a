"""KJT collections: same values as the pure-PyTorch tables, pooling, drop-in for TorchRec models."""

from __future__ import annotations

import pytest
import torch
from torchrec import EmbeddingBagConfig, EmbeddingConfig, KeyedJaggedTensor
from torchrec.models.dlrm import DLRM
from torchrec.modules.embedding_configs import PoolingType

from mgqe_dist.embeddings import build_embedding
from mgqe_dist.torchrec.collections import (
    MGQEEmbeddingBagCollection,
    MGQEEmbeddingCollection,
    TableCompression,
)

MGQE = TableCompression(
    "mgqe",
    {"tier_boundaries": [10], "num_subspaces": 4, "num_centroids": [8, 2], "init_std": 1.0},
)


def _features() -> KeyedJaggedTensor:
    # Two bags per feature: a = [[3, 12], []] , b = [[40], [0, 0, 49]]
    return KeyedJaggedTensor.from_lengths_sync(
        keys=["a", "b"],
        values=torch.tensor([3, 12, 40, 0, 0, 49]),
        lengths=torch.tensor([2, 0, 1, 3], dtype=torch.int32),
    )


def _bags(pooling: PoolingType = PoolingType.SUM) -> MGQEEmbeddingBagCollection:
    torch.manual_seed(0)
    tables = [
        EmbeddingBagConfig(
            name="ta", embedding_dim=8, num_embeddings=50, feature_names=["a"], pooling=pooling
        ),
        EmbeddingBagConfig(
            name="tb", embedding_dim=8, num_embeddings=50, feature_names=["b"], pooling=pooling
        ),
    ]
    return MGQEEmbeddingBagCollection(tables, {"ta": MGQE, "tb": MGQE})


def _pure_table(bags: MGQEEmbeddingBagCollection, table: str) -> torch.nn.Module:
    """The pure-PyTorch MGQE table holding the collection's query rows and codebooks."""
    pure = build_embedding("mgqe", 50, 8, **MGQE.options)
    pure.query.data.copy_(bags.embeddings.embeddings[table].weight)
    pure.load_state_dict({"query": pure.query, **bags.quantizers[table].state_dict()})
    return pure


def test_sequence_rows_equal_the_pure_mgqe_table() -> None:
    bags = _bags()
    sequences = MGQEEmbeddingCollection(
        [EmbeddingConfig(name="ta", embedding_dim=8, num_embeddings=50, feature_names=["a"])],
        {"ta": MGQE},
    )
    sequences.load_state_dict(
        {k: v for k, v in bags.state_dict().items() if ".tb" not in k and "tb." not in k}
    )
    features = KeyedJaggedTensor.from_lengths_sync(
        keys=["a"], values=torch.tensor([3, 12, 49, 3]), lengths=torch.tensor([3, 1])
    )
    rows = sequences(features)["a"]
    assert rows.lengths().tolist() == [3, 1]
    with torch.no_grad():
        expected = _pure_table(bags, "ta")(torch.tensor([3, 12, 49, 3]))
    torch.testing.assert_close(rows.values().detach(), expected)


def test_bags_pool_quantized_rows_and_empty_bags_are_zero() -> None:
    bags = _bags()
    pooled = bags(_features())
    assert pooled.keys() == ["a", "b"] and pooled.values().shape == (2, 16)
    pure = {"a": _pure_table(bags, "ta"), "b": _pure_table(bags, "tb")}
    with torch.no_grad():
        a = pure["a"](torch.tensor([3, 12])).sum(0)
        b = pure["b"](torch.tensor([0, 0, 49])).sum(0)
    torch.testing.assert_close(pooled["a"][0].detach(), a)
    assert not pooled["a"][1].any()
    torch.testing.assert_close(pooled["b"][1].detach(), b)


def test_mean_pooling_divides_by_bag_length() -> None:
    summed, mean = _bags(PoolingType.SUM)(_features()), _bags(PoolingType.MEAN)(_features())
    torch.testing.assert_close(mean["b"][1], summed["b"][1] / 3)


def test_centroid_loss_reaches_codebooks_and_task_gradient_reaches_queries() -> None:
    bags = _bags()
    bags(_features()).values().sum().backward()
    assert bags.embeddings.embeddings["ta"].weight.grad[[3, 12]].abs().sum() > 0
    bags.extra_loss().backward()
    assert bags.quantizers["ta"].codebooks[0].grad.abs().sum() > 0


def test_dlrm_runs_unchanged_on_the_mgqe_collection() -> None:
    bags = _bags()
    model = DLRM(
        embedding_bag_collection=bags,
        dense_in_features=3,
        dense_arch_layer_sizes=[8],
        over_arch_layer_sizes=[4, 1],
    )
    logits = model(torch.randn(2, 3), _features())
    assert logits.shape == (2, 1)
    (logits.sum() + bags.extra_loss()).backward()
    assert bags.quantizers["tb"].codebooks[0].grad is not None


def test_kinds_without_per_id_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="'lrf' cannot live in a TorchRec collection"):
        TableCompression("lrf")


def test_missing_feature_is_named() -> None:
    features = KeyedJaggedTensor.from_lengths_sync(
        keys=["a"], values=torch.tensor([1]), lengths=torch.tensor([1])
    )
    with pytest.raises(ValueError, match=r"\['b'\] are missing"):
        _bags()(features)
