"""Unpacking a whole packed stream into narrow integer codes (what serving tables hold)."""

import pytest
import torch

from mgqe_dist.serve.bitpack import code_dtype, pack_bits, unpack_bits


@pytest.mark.parametrize("bits", [0, 1, 3, 6, 8, 9, 13, 15, 16])
def test_unpacked_codes_equal_packed_codes(bits: int) -> None:
    generator = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 1 << bits, (1003,), generator=generator)
    unpacked = unpack_bits(pack_bits(codes, bits), len(codes), bits)
    assert unpacked.dtype == code_dtype(bits)
    assert torch.equal(unpacked.long(), codes)


def test_codes_longer_than_a_chunk_unpack_across_chunk_boundaries() -> None:
    codes = torch.randint(0, 1 << 5, (3 << 20,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(unpack_bits(pack_bits(codes, 5), len(codes), 5).long(), codes)


def test_byte_codes_are_the_stream_itself() -> None:
    packed = pack_bits(torch.tensor([7, 0, 255]), 8)
    assert unpack_bits(packed, 3, 8).data_ptr() == packed.data_ptr()


def test_narrow_codes_pack_as_their_int64_values_do() -> None:
    codes = torch.randint(0, 64, (100,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(pack_bits(codes.to(torch.uint8), 6), pack_bits(codes, 6))


def test_short_stream_is_an_error() -> None:
    with pytest.raises(ValueError, match="10 codes of 6 bits need 8 bytes, the stream has 7"):
        unpack_bits(torch.zeros(7, dtype=torch.uint8), 10, 6)
