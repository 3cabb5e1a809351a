"""Serving tables rebuild exactly the embeddings of the trained tables they come from."""

from collections.abc import Mapping
from typing import Any

import pytest
import torch

from mgqe_dist.embeddings import build_embedding
from mgqe_dist.serve import tables
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


def _stored_code(packed: torch.Tensor, index: int, bits: int) -> int:
    """Code `index` of a packed stream, read bit by bit from one big little-endian integer."""
    stream = int.from_bytes(bytes(packed.tolist()), "little")
    return (stream >> (index * bits)) & ((1 << bits) - 1)


def _reference_row(
    meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], i: int
) -> torch.Tensor:
    """Row i decoded straight from the artifact's tensors, one id and one code at a time."""
    if meta["format"] == "float":
        return tensors["weight"][i]
    if meta["format"] == "low_rank":
        return tensors["factors"][i] @ tensors["projection"]
    if meta["format"] == "scalar_quant":
        d, bits = meta["d"], meta["bits"]
        codes = [_stored_code(tensors["codes"], i * d + j, bits) for j in range(d)]
        return tensors["minimum"] + torch.tensor(codes) * tensors["step"]
    tier, spec = next((t, s) for t, s in enumerate(meta["tiers"]) if s["start"] <= i < s["stop"])
    book = tensors["codebook0" if meta["shared_centroids"] else f"codebook{tier}"]
    num_sub, row = spec["num_subspaces"], i - spec["start"]
    packed = tensors[f"codes.tier{tier}"]
    codes = [_stored_code(packed, row * num_sub + s, spec["bits"]) for s in range(num_sub)]
    return torch.cat([book[s, code] for s, code in enumerate(codes)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_decode_equals_reference_decode(case: str) -> None:
    """Every id (tier boundaries included, in any order) and unknown ids, which get the OOV
    row, decode as a one-id-at-a-time reading of the stored bits would."""
    served = _roundtrip(*_trained(case))
    meta, tensors = served.meta(), served.tensors()
    ids = torch.cat([torch.arange(N).flip(0), torch.tensor([-1, N, N + 100, N - 1])])
    known = [i if 0 <= i < N else N - 1 for i in ids.tolist()]
    expected = torch.stack([_reference_row(meta, tensors, i) for i in known])
    got = served(ids.view(6, 9)).view(-1, D)
    if case == "lrf":  # one row at a time against a batched matmul: float rounding may differ
        torch.testing.assert_close(got, expected)
    else:
        assert torch.equal(got, expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reloaded_table_stores_the_same_bytes(case: str) -> None:
    kind, table = _trained(case)
    stored = serving_table(kind, table).tensors()
    reloaded = _roundtrip(kind, table).tensors()
    assert stored.keys() == reloaded.keys()
    for name, value in stored.items():
        assert value.dtype == reloaded[name].dtype and torch.equal(value, reloaded[name]), name


@pytest.mark.parametrize("case", ["dpq", "mgqe_shared", "mgqe_unshared", "mgqe_var_d"])
def test_embeddings_from_codes_equal_served_rows(case: str) -> None:
    served = _roundtrip(*_trained(case))
    assert isinstance(served, CodebookTable)
    ids = torch.tensor([0, 4, 5, 19, 20, 49, N + 3])
    rebuilt = served.embed_codes(served.tiers_of(ids), served.codes(ids))
    assert torch.equal(rebuilt, served(ids))


def test_compiled_decode_kernel_is_built() -> None:
    assert tables._decode is not None, "the C decode kernel was not built: run scripts/setup_env.sh"


@pytest.mark.parametrize("case", ["sq", "dpq", "mgqe_shared", "mgqe_unshared", "mgqe_var_d"])
def test_compiled_decode_equals_torch_decode(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    served = _roundtrip(*_trained(case))
    ids = torch.tensor([[0, 4, 5, 19, -7], [20, 49, 49, 7, N + 3]], dtype=torch.int32)
    compiled = served(ids)
    monkeypatch.setattr(tables, "_decode", None)
    assert torch.equal(compiled, served(ids))


def test_compiled_decode_of_wide_codes_equals_torch_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # K = 300 > 256: codes are held as int16.
    torch.manual_seed(0)
    table = build_embedding("dpq", 400, D, init_std=1.0, num_subspaces=8, num_centroids=300)
    table.finalize()
    served = _roundtrip("dpq", table.eval())
    assert served._codes.dtype == torch.int16
    ids = torch.randint(0, 400, (64,))
    compiled = served(ids)
    monkeypatch.setattr(tables, "_decode", None)
    assert torch.equal(compiled, served(ids))


def test_compiled_decode_refuses_a_code_outside_the_centroids() -> None:
    served = _roundtrip(*_trained("dpq"))
    assert isinstance(served, CodebookTable)
    served._codes[3, 0] = 255  # 16 centroids, 4 groups: row 3 * 16 + 255 is past the table
    with pytest.raises(ValueError, match="outside the centroid table"):
        served(torch.tensor([3]))
