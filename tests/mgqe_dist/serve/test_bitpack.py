import pytest
import torch

from mgqe_dist.serve.bitpack import bits_for, pack_bits, packed_bytes, read_bits, with_read_padding


@pytest.mark.parametrize("bits", [1, 3, 6, 8, 9, 13, 16])
def test_every_code_reads_back_at_its_offset(bits: int) -> None:
    codes = torch.randint(0, 1 << bits, (1001,), generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and len(packed) == packed_bytes(len(codes), bits)
    offsets = torch.arange(len(codes)) * bits
    assert torch.equal(read_bits(with_read_padding(packed), offsets, bits), codes)


def test_codes_read_in_any_order_with_mixed_widths() -> None:
    head, tail = torch.tensor([255, 0, 17]), torch.tensor([63, 5])
    stream = torch.cat([pack_bits(head, 8), pack_bits(tail, 6)])
    offsets = torch.tensor([24 + 6, 8, 24, 0])
    widths = torch.tensor([6, 8, 6, 8])
    got = read_bits(with_read_padding(stream), offsets, widths)
    assert got.tolist() == [5, 0, 63, 255]


def test_zero_bits_store_nothing() -> None:
    assert len(pack_bits(torch.zeros(10, dtype=torch.long), 0)) == 0


def test_code_too_wide_for_bits_is_an_error() -> None:
    with pytest.raises(ValueError, match="out of range for 6 bits"):
        pack_bits(torch.tensor([64]), 6)


@pytest.mark.parametrize(("values", "bits"), [(1, 0), (2, 1), (64, 6), (65, 7), (256, 8)])
def test_bits_for_is_ceil_log2(values: int, bits: int) -> None:
    assert bits_for(values) == bits
