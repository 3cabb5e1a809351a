"""Serving tables rebuild exactly the embeddings of the trained tables they come from."""

from typing import Any

import pytest
import torch

from mgqe_dist.embeddings import build_embedding
from mgqe_dist.serve.tables import SERVING_FORMATS, CodebookTable, serving_table

N, D = 50, 8
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "lrf": ("lrf", {"rank": 3}),
    "sq": ("sq", {"bits": 5}),
    "dpq": ("dpq", {"num_subspaces": 4, "num_centroids": 16}),
    "mgqe_shared": (
        "mgqe",
        {"tier_boundaries": [5, 20], "num_subspaces": 4, "num_centroids": [16, 8, 2]},
    ),
    "mgqe_unshared": (
        "mgqe",
        {
            "tier_boundaries": [5],
            "num_subspaces": 4,
            "num_centroids": [16, 4],
            "shared_centroids": False,
        },
    ),
    "mgqe_var_d": (
        "mgqe",
        {
            "tier_boundaries": [5],
            "num_subspaces": [8, 2],
            "num_centroids": [16, 16],
            "shared_centroids": False,
        },
    ),
}


def _trained(case: str) -> tuple[str, torch.nn.Module]:
    kind, options = CASES[case]
    torch.manual_seed(0)
    table = build_embedding(kind, N, D, init_std=1.0, **options)
    table.finalize()
    return kind, table.eval()


def _roundtrip(kind: str, table: torch.nn.Module) -> Any:
    served = serving_table(kind, table)
    return SERVING_FORMATS.get(served.meta()["format"]).from_artifact(
        served.meta(), served.tensors()
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_served_rows_equal_trained_rows(case: str) -> None:
    kind, table = _trained(case)
    served = _roundtrip(kind, table)
    ids = torch.tensor([[0, 4, 5, 19], [20, 49, 49, 7]])
    with torch.no_grad():
        expected = table(ids)
    if kind == "lrf":  # a matmul: same op, float rounding may differ with batch shape
        torch.testing.assert_close(served(ids), expected)
    else:
        assert torch.equal(served(ids), expected)
    assert served.serving_bits() == table.serving_bits()


@pytest.mark.parametrize("case", ["dpq", "mgqe_shared", "mgqe_unshared", "mgqe_var_d"])
def test_stored_codes_equal_trained_codes(case: str) -> None:
    kind, table = _trained(case)
    served = _roundtrip(kind, table)
    assert isinstance(served, CodebookTable)
    ids = torch.arange(N)
    assert torch.equal(served.codes(ids), table.codes(ids))


def test_tail_codes_are_packed_at_their_tier_width() -> None:
    kind, table = _trained("mgqe_shared")
    served = serving_table(kind, table)
    tiers = served.meta()["tiers"]
    assert [t["bits"] for t in tiers] == [4, 3, 1]
    sizes = {k: len(v) for k, v in served.tensors().items() if k.startswith("codes")}
    assert sizes == {
        "codes.tier0": 5 * 4 * 4 // 8,
        "codes.tier1": 15 * 4 * 3 // 8 + 1,
        "codes.tier2": 30 * 4 // 8,
    }


@pytest.mark.parametrize("case", ["full", "sq", "mgqe_shared"])
def test_unknown_ids_are_served_the_oov_row(case: str) -> None:
    served = _roundtrip(*_trained(case))
    oov = served(torch.tensor([N - 1]))
    assert torch.equal(served(torch.tensor([-3, N, N + 100])), oov.expand(3, D))


def test_torchrec_kinds_have_no_serving_format() -> None:
    with pytest.raises(ValueError, match="has no serving format"):
        serving_table("torchrec_int8", build_embedding("full", N, D))
