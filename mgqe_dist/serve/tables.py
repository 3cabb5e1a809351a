"""Read-only serving tables rebuilt from an artifact, one format per family of embedding kinds.

Each format converts a trained table into the tensors the artifact stores (`tensors()`, with
codes bit-packed as uint8) plus a JSON description (`meta()`), and rebuilds itself from those
two. In memory, codes are kept unpacked, one integer per code (uint8 up to 8 bits), so
decoding is row gathers and arithmetic on whole bytes, never per-bit work. Lookups are
vectorised over the whole batch; ids outside [0, n) are served the OOV row n - 1 (the
reserved id of unseen ids), except by the tables of a served model, whose `id_check` refuses
them in every lookup (serve/artifact.py). On CPU, SQ and codebook lookups run in one pass
through the C kernel `_decode.c` when the install step built it, else through torch ops (same
values).
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import nn

from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.embeddings.full import FullEmbedding
from mgqe_dist.embeddings.low_rank import LowRankEmbedding
from mgqe_dist.embeddings.mgqe import MGQEEmbedding
from mgqe_dist.embeddings.scalar_quant import ScalarQuantEmbedding
from mgqe_dist.registry import Registry
from mgqe_dist.serve.bitpack import bits_for, code_dtype, pack_bits, unpack_bits

Tensors = dict[str, torch.Tensor]


def _load_kernel() -> ModuleType | None:
    """The C decode kernel (_decode.c), built by the install step (setup.py); None where it
    could not be built, and lookups then decode with torch ops."""
    try:
        return importlib.import_module("mgqe_dist.serve._decode")
    except ImportError:
        return None


_decode = _load_kernel()


def _kernel_ids(ids: torch.Tensor) -> torch.Tensor | None:
    """`ids` flat, int64 and contiguous on the CPU for the C kernel; None where the kernel is
    not there, or the ids are not integers or live elsewhere (the torch path then decodes, or
    refuses them)."""
    integer = not (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool)
    if _decode is None or ids.device.type != "cpu" or not integer:
        return None
    return ids.reshape(-1).to(torch.int64).contiguous()


class ServingTable(EmbeddingModule):
    """Base of the serving formats. Buffers are not persistent: the artifact stores a table's
    tensors itself (packed), so a served model's state dict holds only its dense weights."""

    format: ClassVar[str]

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        # Set by a served model: raises on ids no raw id maps to. Every lookup (a call,
        # codes(), tiers_of()) runs it first, so none of them serves such ids the OOV row.
        self.id_check: Callable[[Any], None] | None = None
        self.register_forward_pre_hook(_check_call_ids)

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

    def check_ids(self, ids: Any) -> None:
        """Run `id_check`, if set, on ids about to be looked up."""
        if self.id_check is not None:
            self.id_check(ids)

    def known(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids with every id outside [0, n) replaced by the OOV id n - 1."""
        inside = (ids >= 0) & (ids < self.num_embeddings)
        return torch.where(inside, ids, self.num_embeddings - 1)


def _check_call_ids(table: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook of every serving table: a call checks its ids like the methods do."""
    assert isinstance(table, ServingTable)
    table.check_ids(args[0])


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
    """SQ: n x d codes of b bits, served as minimum[j] + code * step[j].

    The codes are held as an (n, d) matrix of `code_dtype(b)` (uint8 at the default 8 bits:
    n * d bytes, the packed size itself), so a lookup is one row gather and a multiply-add.
    """

    format = "scalar_quant"
    codes: torch.Tensor
    minimum: torch.Tensor
    step: torch.Tensor

    def __init__(
        self, codes: torch.Tensor, minimum: torch.Tensor, step: torch.Tensor, bits: int
    ) -> None:
        super().__init__(*codes.shape)
        self.bits = bits
        self._keep("codes", codes.to(code_dtype(bits)))
        self._keep("minimum", minimum.float())
        self._keep("step", step.float())

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        assert isinstance(table, ScalarQuantEmbedding)
        if not bool(table.quantized):
            raise ValueError("SQ table was never finalized (quantized); export a finished run")
        codes = table.codes(torch.arange(table.num_embeddings, device=table.weight.device))
        return cls(codes.cpu(), table.minimum.cpu(), table.step.cpu(), table.bits)

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        n, d, bits = meta["n"], meta["d"], meta["bits"]
        codes = unpack_bits(tensors["codes"], n * d, bits).view(n, d)
        return cls(codes, tensors["minimum"], tensors["step"], bits)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "bits": self.bits}

    def tensors(self) -> Tensors:
        return {
            "codes": pack_bits(self.codes, self.bits),
            "minimum": self.minimum,
            "step": self.step,
        }

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = _kernel_ids(ids)
        if flat is not None and self.codes.dtype == torch.uint8:
            assert _decode is not None
            out = torch.empty(len(flat), self.embedding_dim)
            args = (self.codes, flat, self.step, self.minimum)
            _decode.scalar(*(a.numpy() for a in args), out.numpy(), self.num_embeddings)
            return out.reshape(*ids.shape, self.embedding_dim)
        codes = self.codes.index_select(0, self.known(ids.reshape(-1)))
        # Multiply, then add: the two roundings of the trained table's minimum + code * step
        # (a fused multiply-add rounds once and would break bit parity).
        values = codes.float().mul_(self.step).add_(self.minimum)
        return values.reshape(*ids.shape, self.embedding_dim)

    def serving_bits(self) -> int:
        return self.num_embeddings * self.embedding_dim * self.bits + 2 * self.embedding_dim * 32


@SERVING_FORMATS.register("codebook")
class CodebookTable(ServingTable):
    """MGQE/DPQ: per tier, n_i x D_i codes of ceil(log2 K_i) bits, and float32 codebooks.

    In memory every tier is laid out on G = lcm(D_i) groups of d / G dims: an (n, G) code
    matrix (a tier with fewer subspaces repeats each code over the groups its subspace
    spans) and one centroid table holding every codebook, book by book, group by group, each
    group padded to K_max rows. Code c of group g of an id whose tier reads book b is then
    centroid row b * G * K_max + g * K_max + c, so decoding any batch, all tiers mixed, is one
    row gather of codes, one add of per-group (and per-book) offsets and one gather of
    centroid rows: no loop over tiers or subspaces, no per-bit work.

    Memory: uint8 codes (K <= 256) take n * G bytes, 640 MB at 10M x 64, against 256 bytes of
    floats per id for the full table; only a variable-D tail pays for its repeated codes
    (2x for D = [64, 32]). Byte-wide codes keep the gather to one cache line per id and the
    offsets add vectorised; the artifact on disk stays bit-packed at ceil(log2 K_i) bits.
    """

    format = "codebook"
    values: torch.Tensor
    _codes: torch.Tensor
    _centroids: torch.Tensor
    _group_offsets: torch.Tensor
    _book_base: torch.Tensor
    _first: torch.Tensor
    _num_sub: torch.Tensor
    _code_groups: torch.Tensor
    _group_subspace: torch.Tensor

    def __init__(
        self,
        tiers: list[dict[str, int]],
        codes: list[torch.Tensor],
        codebooks: list[torch.Tensor],
        shared: bool,
        embedding_dim: int,
    ) -> None:
        super().__init__(tiers[-1]["stop"], embedding_dim)
        self.tiers, self.shared = tiers, shared
        self.groups = math.lcm(*(t["num_subspaces"] for t in tiers))
        # Tiers with their own codebooks add their book's offset, known from each id's tier.
        self.separate_books = len(codebooks) > 1
        self.codebook_shapes = [list(book.shape) for book in codebooks]
        self._keep("values", torch.cat([b.detach().float().reshape(-1) for b in codebooks]))
        self._keep("_codes", self._code_matrix(codes))
        self._keep("_centroids", self._centroid_table(codebooks))
        for name, value in self._layout().items():
            self._keep(name, value)

    def _code_matrix(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The (n, G) matrix of every tier's codes, each repeated over its subspace's groups."""
        dtype = code_dtype(max(t["bits"] for t in self.tiers))
        out = torch.empty(self.num_embeddings, self.groups, dtype=dtype)
        for spec, tier_codes in zip(self.tiers, codes, strict=True):
            rows, num_sub = spec["stop"] - spec["start"], spec["num_subspaces"]
            target = out[spec["start"] : spec["stop"]].view(rows, num_sub, self.groups // num_sub)
            target.copy_(tier_codes.reshape(rows, num_sub, 1))
        return out

    def _centroid_table(self, codebooks: list[torch.Tensor]) -> torch.Tensor:
        """Every codebook on the G groups, padded to K_max codes: (books * G * K_max, d / G),
        or flat when a group is one dim (a 1-d index_select is the fastest gather)."""
        max_codes = max(book.shape[1] for book in codebooks)
        books = []
        for book in codebooks:
            num_sub, num_codes, width = book.shape
            split = self.groups // num_sub
            fine = book.detach().float().reshape(num_sub, num_codes, split, width // split)
            fine = fine.transpose(1, 2).reshape(self.groups, num_codes, -1)
            books.append(torch.nn.functional.pad(fine, (0, 0, 0, max_codes - num_codes)))
        table = torch.stack(books).reshape(-1, self.embedding_dim // self.groups)
        return table.view(-1) if table.shape[1] == 1 else table

    def _layout(self) -> Tensors:
        """Offsets into the centroid table and, per tier, where its subspaces' codes lie."""
        max_codes = max(shape[1] for shape in self.codebook_shapes)
        groups = torch.arange(self.groups)
        max_sub = max(t["num_subspaces"] for t in self.tiers)
        book_base, code_groups, group_subspace = [], [], []
        for tier, spec in enumerate(self.tiers):
            num_sub = spec["num_subspaces"]
            split = self.groups // num_sub
            book_base.append((tier if self.separate_books else 0) * self.groups * max_codes)
            # Subspace s of this tier reads its code at group s * split (padding: the last).
            code_groups.append(torch.arange(max_sub).clamp(max=num_sub - 1) * split)
            group_subspace.append(groups // split)
        return {
            "_group_offsets": (groups * max_codes).int(),
            "_book_base": torch.tensor(book_base, dtype=torch.int32),
            "_first": torch.tensor([t["start"] for t in self.tiers], dtype=torch.long),
            "_num_sub": torch.tensor([t["num_subspaces"] for t in self.tiers]),
            "_code_groups": torch.stack(code_groups),
            "_group_subspace": torch.stack(group_subspace),
        }

    @classmethod
    def from_trained(cls, table: EmbeddingModule) -> ServingTable:
        assert isinstance(table, MGQEEmbedding)
        edges = [0, *table.tier_boundaries, table.num_embeddings]
        tiers, codes = [], []
        for tier, (start, stop) in enumerate(itertools.pairwise(edges)):
            num_sub, num_centroids = table.subspaces[tier], table.centroids_per_tier[tier]
            ids = torch.arange(start, stop, device=table.query.device)
            codes.append(table.codes(ids)[:, :num_sub].cpu())
            tiers.append(
                {
                    "start": start,
                    "stop": stop,
                    "num_subspaces": num_sub,
                    "num_centroids": num_centroids,
                    "bits": bits_for(num_centroids),
                }
            )
        books = [book.detach().cpu() for book in table.codebooks]
        return cls(tiers, codes, books, table.shared, table.embedding_dim)

    @classmethod
    def from_artifact(cls, meta: Mapping[str, Any], tensors: Tensors) -> ServingTable:
        codes = []
        for i, spec in enumerate(meta["tiers"]):
            rows, num_sub = spec["stop"] - spec["start"], spec["num_subspaces"]
            packed = tensors[f"codes.tier{i}"]
            codes.append(unpack_bits(packed, rows * num_sub, spec["bits"]).view(rows, num_sub))
        books = [
            tensors[f"codebook{i}"].reshape(shape)
            for i, shape in enumerate(meta["codebook_shapes"])
        ]
        return cls(meta["tiers"], codes, books, meta["shared_centroids"], meta["d"])

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
        for tier, spec in enumerate(self.tiers):
            split = self.groups // spec["num_subspaces"]
            tier_codes = self._codes[spec["start"] : spec["stop"], ::split]
            out[f"codes.tier{tier}"] = pack_bits(tier_codes, spec["bits"])
        offsets = [0, *itertools.accumulate(s[0] * s[1] * s[2] for s in self.codebook_shapes)]
        for i, (lo, hi) in enumerate(itertools.pairwise(offsets)):
            out[f"codebook{i}"] = self.values[lo:hi].reshape(self.codebook_shapes[i])
        return out

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Stored codes of each id, (*ids.shape, max D); -1 pads tiers with fewer subspaces."""
        self.check_ids(ids)
        flat = self.known(ids.reshape(-1))
        tier = self._tier(flat)
        stored = self._codes.index_select(0, flat).long().gather(1, self._code_groups[tier])
        sub = torch.arange(stored.shape[1], device=flat.device)
        padded = torch.where(sub < self._num_sub[tier][:, None], stored, -1)
        return padded.reshape(*ids.shape, -1)

    def tiers_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Tier of each id (unknown ids: the OOV id's tier)."""
        self.check_ids(ids)
        return self._tier(self.known(ids))

    def _tier(self, known_ids: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(known_ids, self._first[1:], right=True)

    def embed_codes(self, tiers: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Embeddings from (B,) tiers and (B, max D) codes, e.g. read from a feature store."""
        return self._decode(codes.gather(1, self._group_subspace[tiers]), tiers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        compiled = _kernel_ids(ids)
        if compiled is not None:
            return self._decode_compiled(compiled).reshape(*ids.shape, self.embedding_dim)
        flat = self.known(ids.reshape(-1))
        tiers = self._tier(flat) if self.separate_books else None
        values = self._decode(self._codes.index_select(0, flat), tiers)
        return values.reshape(*ids.shape, self.embedding_dim)

    def _decode_compiled(self, ids: torch.Tensor) -> torch.Tensor:
        """`forward` by the C kernel: (B, d) embeddings of flat int64 ids, in one pass."""
        assert _decode is not None
        out = torch.empty(len(ids), self.embedding_dim)
        book_base = self._book_base if self.separate_books else self._book_base[:0]
        tensors = (self._codes, ids, self._centroids, self._group_offsets, book_base, self._first)
        width = self.embedding_dim // self.groups
        code_size = self._codes.element_size()
        _decode.codebook(
            *(t.numpy() for t in tensors), out.numpy(), self.num_embeddings, width, code_size
        )
        return out

    def _decode(self, codes: torch.Tensor, tiers: torch.Tensor | None) -> torch.Tensor:
        """(B, d) embeddings of (B, G) codes; `tiers` is needed with separate codebooks."""
        index = torch.add(codes, self._group_offsets)
        if tiers is not None:
            index += self._book_base[tiers][:, None]
        return self._centroids.index_select(0, index.view(-1)).view(-1, self.embedding_dim)

    def serving_bits(self) -> int:
        code_bits = sum(
            (t["stop"] - t["start"]) * t["num_subspaces"] * t["bits"] for t in self.tiers
        )
        return code_bits + self.values.numel() * 32
