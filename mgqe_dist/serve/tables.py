"""Read-only serving tables rebuilt from an artifact, one format per family of embedding kinds.

Each format converts a trained table into the tensors the artifact stores (`tensors()`, with
codes already bit-packed as uint8) plus a JSON description (`meta()`), and rebuilds itself
from those two. Lookups are vectorised over the whole batch; ids outside [0, n) are served
the OOV row n - 1 (the reserved id of unseen ids).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.embeddings.full import FullEmbedding
from mgqe_dist.embeddings.low_rank import LowRankEmbedding
from mgqe_dist.embeddings.mgqe import MGQEEmbedding
from mgqe_dist.embeddings.scalar_quant import ScalarQuantEmbedding
from mgqe_dist.registry import Registry
from mgqe_dist.serve.bitpack import bits_for, pack_bits, read_bits, with_read_padding

Tensors = dict[str, torch.Tensor]


class ServingTable(EmbeddingModule):
    """Base of the serving formats. Buffers are not persistent: the artifact stores a table's
    tensors itself (packed), so a served model's state dict holds only its dense weights."""

    format: ClassVar[str]

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        """The serving form of a trained (and finalized) table."""
        raise NotImplementedError

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        """Rebuild from the manifest entry and the stored tensors of this table."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """JSON description for the manifest (sizes, tiers, bit widths)."""
        return {"format": self.format, "n": self.num_embeddings, "d": self.embedding_dim}

    def tensors(self) -> Tensors:
        """The tensors to store: packed codes (uint8) and float32 values."""
        raise NotImplementedError

    def _keep(self, name: str, value: torch.Tensor) -> None:
        self.register_buffer(name, value.detach().contiguous(), persistent=False)

    def known(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids with every id outside [0, n) replaced by the OOV id n - 1."""
        inside = (ids >= 0) & (ids < self.num_embeddings)
        return torch.where(inside, ids, self.num_embeddings - 1)


SERVING_FORMATS: Registry[type[ServingTable]] = Registry("serving format")
# Trained embedding kind -> serving format name.
KIND_FORMATS = {
    "full": "float",
    "lrf": "low_rank",
    "sq": "scalar_quant",
    "mgqe": "codebook",
    "dpq": "codebook",
}


def serving_table(kind: str, table: EmbeddingModule) -> ServingTable:
    """Convert a trained table of embedding kind `kind` into its serving form."""
    if kind not in KIND_FORMATS:
        raise ValueError(
            f"embedding kind {kind!r} has no serving format; exportable kinds: "
            f"{sorted(KIND_FORMATS)}"
        )
    return SERVING_FORMATS.get(KIND_FORMATS[kind]).from_trained(table)


@SERVING_FORMATS.register("float")
class FloatTable(ServingTable):
    """Full embedding: the float32 rows as trained."""

    format = "float"
    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__(*weight.shape)
        self._keep("weight", weight.float())

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        assert isinstance(table, FullEmbedding)
        return cls(table.weight)

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        return cls(tensors["weight"])

    def tensors(self) -> Tensors:
        return {"weight": self.weight}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(self.known(ids), self.weight)

    def serving_bits(self) -> int:
        return self.weight.numel() * 32


@SERVING_FORMATS.register("low_rank")
class LowRankTable(ServingTable):
    """LRF: n x r factors times an r x d projection, both float32."""

    format = "low_rank"
    factors: torch.Tensor
    projection: torch.Tensor

    def __init__(self, factors: torch.Tensor, projection: torch.Tensor) -> None:
        super().__init__(factors.shape[0], projection.shape[1])
        self._keep("factors", factors.float())
        self._keep("projection", projection.float())

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        assert isinstance(table, LowRankEmbedding)
        return cls(table.factors, table.projection)

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        return cls(tensors["factors"], tensors["projection"])

    def tensors(self) -> Tensors:
        return {"factors": self.factors, "projection": self.projection}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(self.known(ids), self.factors) @ self.projection

    def serving_bits(self) -> int:
        return (self.factors.numel() + self.projection.numel()) * 32


@SERVING_FORMATS.register("scalar_quant")
class ScalarQuantTable(ServingTable):
    """SQ: n x d codes of b bits, served as minimum[j] + code * step[j]."""

    format = "scalar_quant"
    packed: torch.Tensor
    _dim_bits: torch.Tensor
    minimum: torch.Tensor
    step: torch.Tensor

    def __init__(
        self, packed: torch.Tensor, minimum: torch.Tensor, step: torch.Tensor, n: int, bits: int
    ) -> None:
        super().__init__(n, len(minimum))
        self.bits = bits
        self.stored_bytes = len(packed)
        self._keep("packed", with_read_padding(packed))
        self._keep("minimum", minimum.float())
        self._keep("step", step.float())
        self._keep("_dim_bits", torch.arange(self.embedding_dim) * bits)

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        assert isinstance(table, ScalarQuantEmbedding)
        if not bool(table.quantized):
            raise ValueError("SQ table was never finalized (quantized); export a finished run")
        codes = table.codes(torch.arange(table.num_embeddings, device=table.weight.device))
        packed = pack_bits(codes.cpu(), table.bits)
        return cls(packed, table.minimum.cpu(), table.step.cpu(), table.num_embeddings, table.bits)

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        return cls(tensors["codes"], tensors["minimum"], tensors["step"], meta["n"], meta["bits"])

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "bits": self.bits}

    def tensors(self) -> Tensors:
        return {
            "codes": self.packed[: self.stored_bytes],
            "minimum": self.minimum,
            "step": self.step,
        }

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = self.known(ids.reshape(-1))
        offsets = (flat * (self.embedding_dim * self.bits))[:, None] + self._dim_bits
        codes = read_bits(self.packed, offsets, self.bits)
        return (self.minimum + codes * self.step).reshape(*ids.shape, self.embedding_dim)

    def serving_bits(self) -> int:
        return self.num_embeddings * self.embedding_dim * self.bits + 2 * self.embedding_dim * 32


@SERVING_FORMATS.register("codebook")
class CodebookTable(ServingTable):
    """MGQE/DPQ: per tier, n_i x D_i codes of ceil(log2 K_i) bits, and float32 codebooks.

    Decoding reads, for every (id, output dim) pair, the code of the subspace holding that dim
    and the matching centroid value: the tier's layout is looked up per id from small tables,
    so ids of all tiers decode together in one vectorised pass.
    """

    format = "codebook"
    packed: torch.Tensor
    values: torch.Tensor
    # Per-tier layout (see _layout); indexed by each id's tier.
    _first: torch.Tensor
    _bit_base: torch.Tensor
    _num_sub: torch.Tensor
    _row_bits: torch.Tensor
    _dim_bits: torch.Tensor
    _dim_value: torch.Tensor
    _bits: torch.Tensor
    _width: torch.Tensor

    def __init__(
        self,
        tiers: list[dict[str, int]],
        packed: list[torch.Tensor],
        codebooks: list[torch.Tensor],
        shared: bool,
        embedding_dim: int,
    ) -> None:
        super().__init__(tiers[-1]["stop"], embedding_dim)
        self.tiers, self.shared = tiers, shared
        self.stored_bytes = [len(p) for p in packed]
        self.codebook_shapes = [list(book.shape) for book in codebooks]
        values = torch.cat([b.detach().float().reshape(-1) for b in codebooks])
        self._keep("packed", with_read_padding(torch.cat(packed)))
        self._keep("values", values)
        for name, value in self._layout().items():
            self._keep(name, value)

    def _layout(self) -> Tensors:
        """Per-tier lookup tables: id range, bit base, and per output dim the code's bit offset
        within a row and the centroid value's index for code 0."""
        dims = torch.arange(self.embedding_dim)
        bit_base = [0, *itertools.accumulate(8 * b for b in self.stored_bytes)]
        book_sizes = [s[0] * s[1] * s[2] for s in self.codebook_shapes]
        book_base = [0, *itertools.accumulate(book_sizes)]
        rows: dict[str, list[Any]] = {
            key: [] for key in ("row_bits", "dim_bits", "dim_value", "bits", "width")
        }
        for tier, spec in enumerate(self.tiers):
            book = 0 if self.shared else tier
            stored_k = self.codebook_shapes[book][1]
            width = self.embedding_dim // spec["num_subspaces"]
            subspace, within = dims // width, dims % width
            rows["row_bits"].append(spec["num_subspaces"] * spec["bits"])
            rows["dim_bits"].append(bit_base[tier] + subspace * spec["bits"])
            rows["dim_value"].append(book_base[book] + subspace * stored_k * width + within)
            rows["bits"].append(spec["bits"])
            rows["width"].append(width)
        return {
            "_first": torch.tensor([t["start"] for t in self.tiers], dtype=torch.long),
            "_bit_base": torch.tensor(bit_base[:-1], dtype=torch.long),
            "_num_sub": torch.tensor([t["num_subspaces"] for t in self.tiers]),
            "_row_bits": torch.tensor(rows["row_bits"]),
            "_dim_bits": torch.stack(rows["dim_bits"]),
            "_dim_value": torch.stack(rows["dim_value"]),
            "_bits": torch.tensor(rows["bits"]),
            "_width": torch.tensor(rows["width"]),
        }

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        assert isinstance(table, MGQEEmbedding)
        edges = [0, *table.tier_boundaries, table.num_embeddings]
        tiers, packed = [], []
        for tier, (start, stop) in enumerate(itertools.pairwise(edges)):
            num_sub, num_centroids = table.subspaces[tier], table.centroids_per_tier[tier]
            bits = bits_for(num_centroids)
            ids = torch.arange(start, stop, device=table.query.device)
            codes = table.codes(ids)[:, :num_sub].cpu()
            packed.append(pack_bits(codes, bits))
            tiers.append(
                {
                    "start": start,
                    "stop": stop,
                    "num_subspaces": num_sub,
                    "num_centroids": num_centroids,
                    "bits": bits,
                }
            )
        books = [book.detach().cpu() for book in table.codebooks]
        return cls(tiers, packed, books, table.shared, table.embedding_dim)

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        packed = [tensors[f"codes.tier{i}"] for i in range(len(meta["tiers"]))]
        books = [
            tensors[f"codebook{i}"].reshape(shape)
            for i, shape in enumerate(meta["codebook_shapes"])
        ]
        return cls(meta["tiers"], packed, books, meta["shared_centroids"], meta["d"])

    def meta(self) -> dict[str, Any]:
        return {
            **super().meta(),
            "variant": self.variant(),
            "shared_centroids": self.shared,
            "tiers": self.tiers,
            "codebook_shapes": self.codebook_shapes,
        }

    def variant(self) -> str:
        """Which MGQE variant (or DPQ) this table is, for the manifest."""
        if len(self.tiers) == 1:
            return "dpq"
        if self.shared:
            return "shared_variable_k"
        if len({t["num_subspaces"] for t in self.tiers}) > 1:
            return "unshared_variable_d"
        return "unshared_variable_k"

    def tensors(self) -> Tensors:
        out: Tensors = {}
        starts = [0, *itertools.accumulate(self.stored_bytes)]
        for tier, (lo, hi) in enumerate(itertools.pairwise(starts)):
            out[f"codes.tier{tier}"] = self.packed[lo:hi]
        offsets = [0, *itertools.accumulate(s[0] * s[1] * s[2] for s in self.codebook_shapes)]
        for i, (lo, hi) in enumerate(itertools.pairwise(offsets)):
            out[f"codebook{i}"] = self.values[lo:hi].reshape(self.codebook_shapes[i])
        return out

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Stored codes of each id, (*ids.shape, max D); -1 pads tiers with fewer subspaces."""
        flat = self.known(ids.reshape(-1))
        tier = self._tier(flat)
        max_sub = max(t["num_subspaces"] for t in self.tiers)
        sub = torch.arange(max_sub, device=flat.device)
        bits, num_sub = self._bits[tier][:, None], self._num_sub[tier][:, None]
        # Tiers with fewer subspaces re-read their last code in the padding columns.
        within = torch.minimum(sub, num_sub - 1)
        offsets = (self._bit_base[tier] + self._row_start(flat, tier))[:, None] + within * bits
        codes = read_bits(self.packed, offsets, bits)
        return torch.where(sub < num_sub, codes, -1).reshape(*ids.shape, max_sub)

    def _row_start(self, flat: torch.Tensor, tier: torch.Tensor) -> torch.Tensor:
        """Bit offset of each id's first code within its tier's stream."""
        return (flat - self._first[tier]) * self._row_bits[tier]

    def tiers_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Tier of each id (unknown ids: the OOV id's tier)."""
        return self._tier(self.known(ids))

    def _tier(self, known_ids: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(known_ids, self._first[1:], right=True)

    def embed_codes(self, tiers: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Embeddings from (B,) tiers and (B, max D) codes, e.g. read from a feature store."""
        width = self._width[tiers][:, None]
        dims = torch.arange(self.embedding_dim, device=codes.device)
        per_dim = codes.gather(1, (dims // width).expand(len(codes), -1))
        index = self._dim_value[tiers] + per_dim * width
        return self.values.index_select(0, index.reshape(-1)).view(-1, self.embedding_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = self.known(ids.reshape(-1))
        tier = self._tier(flat)
        offsets = self._row_start(flat, tier)[:, None] + self._dim_bits[tier]
        codes = read_bits(self.packed, offsets, self._bits[tier][:, None])
        index = self._dim_value[tier] + codes * self._width[tier][:, None]
        values = self.values.index_select(0, index.reshape(-1))
        return values.reshape(*ids.shape, self.embedding_dim)

    def serving_bits(self) -> int:
        code_bits = sum(
            (t["stop"] - t["start"]) * t["num_subspaces"] * t["bits"] for t in self.tiers
        )
        return code_bits + self.values.numel() * 32
