"""Codes packed at exactly b bits each, a vectorised reader for codes at any bit offset, and
unpacking of a whole stream into the narrowest integer dtype that holds b-bit codes.

Layout: the codes' bits are concatenated least-significant bit first into a little-endian
byte stream, the last byte zero-padded. A code of b <= 16 bits starting at bit offset o lies
within the 3 bytes from o // 8, so reading any batch of codes is three byte gathers, a shift
and a mask, with no loop over ids.
"""

from __future__ import annotations

import torch

MAX_BITS = 16
# Codes packed or unpacked per step: a multiple of 8, so every chunk ends on a byte boundary.
_PACK_CHUNK = 8 << 17
# Zero bytes appended in memory so a read at the last code never runs past the buffer.
READ_PADDING = 2


def bits_for(num_values: int) -> int:
    """Bits per code for `num_values` distinct values: ceil(log2 K), 0 when K == 1."""
    if num_values < 1:
        raise ValueError(f"need at least one value, got {num_values}")
    return (num_values - 1).bit_length()


def packed_bytes(num_codes: int, bits: int) -> int:
    """Bytes that `num_codes` codes of `bits` bits occupy."""
    return (num_codes * bits + 7) // 8


def code_dtype(bits: int) -> torch.dtype:
    """The narrowest integer dtype holding codes of `bits` bits: uint8 up to 8, int16 up to 15,
    int32 for 16 (int16 cannot hold them, and torch's uint16 supports few ops)."""
    if bits <= 8:
        return torch.uint8
    return torch.int16 if bits <= 15 else torch.int32


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack non-negative integer codes (any shape, row-major) at `bits` bits each into uint8.

    Works on groups of 8 codes, which fill exactly `bits` bytes: each group's 8 * bits bits
    are assembled in two 64-bit words (low and high) and split into bytes. Codes widen to
    int64 one chunk at a time, so packing narrow codes needs no int64 copy of them all.
    """
    _check_bits(bits)
    flat = codes.reshape(-1)
    if len(flat) and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"codes out of range for {bits} bits: [{flat.min()}, {flat.max()}]")
    chunks = [_pack_groups(part.long(), bits) for part in flat.split(_PACK_CHUNK)]
    out = torch.cat(chunks) if chunks else flat.new_empty(0, dtype=torch.uint8)
    return out[: packed_bytes(len(flat), bits)]


def unpack_bits(packed: torch.Tensor, count: int, bits: int) -> torch.Tensor:
    """The first `count` codes of a packed stream, as a (count,) tensor of `code_dtype(bits)`.

    8-bit codes are the stream itself (returned without a copy); other widths are read
    chunk by chunk, so the int64 temporaries stay small however long the stream is.
    """
    _check_bits(bits)
    if len(packed) < packed_bytes(count, bits):
        raise ValueError(
            f"{count} codes of {bits} bits need {packed_bytes(count, bits)} bytes, "
            f"the stream has {len(packed)}"
        )
    dtype = code_dtype(bits)
    if bits == 0:
        return torch.zeros(count, dtype=dtype)
    if bits == 8:
        return packed[:count]
    out = torch.empty(count, dtype=dtype)
    for start in range(0, count, _PACK_CHUNK):
        stop = min(start + _PACK_CHUNK, count)
        # Chunks start on a multiple of 8 codes, hence on a byte boundary.
        chunk = packed[start * bits // 8 : packed_bytes(stop, bits)]
        offsets = torch.arange(stop - start) * bits
        out[start:stop] = read_bits(with_read_padding(chunk), offsets, bits)
    return out


def _check_bits(bits: int) -> None:
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in [0, {MAX_BITS}], got {bits}")


def _pack_groups(codes: torch.Tensor, bits: int) -> torch.Tensor:
    groups = torch.nn.functional.pad(codes, (0, -len(codes) % 8)).view(-1, 8)
    low, high = torch.zeros_like(groups[:, 0]), torch.zeros_like(groups[:, 0])
    for k in range(8):
        start = k * bits
        if start < 64:
            low |= groups[:, k] << start  # bits past 63 fall off; they go to `high` below
            if start + bits > 64:
                high |= groups[:, k] >> (64 - start)
        else:
            high |= groups[:, k] << (start - 64)
    shifts = torch.arange(0, 64, 8, device=codes.device)
    bytes_ = torch.cat([(low[:, None] >> shifts) & 255, (high[:, None] >> shifts) & 255], dim=1)
    return bytes_[:, :bits].to(torch.uint8).reshape(-1)


def with_read_padding(packed: torch.Tensor) -> torch.Tensor:
    """The packed stream plus READ_PADDING zero bytes, as `read_bits` expects."""
    return torch.nn.functional.pad(packed, (0, READ_PADDING))


def read_bits(
    padded: torch.Tensor, offsets: torch.Tensor, bits: int | torch.Tensor
) -> torch.Tensor:
    """Codes starting at bit `offsets` with widths `bits` (broadcastable) from a padded stream."""
    byte = (offsets >> 3).reshape(-1)
    # index_select on flat indices is several times faster on CPU than advanced indexing.
    word = (
        padded.index_select(0, byte).long()
        | (padded.index_select(0, byte + 1).long() << 8)
        | (padded.index_select(0, byte + 2).long() << 16)
    ).view(offsets.shape)
    return (word >> (offsets & 7)) & ((1 << bits) - 1)
