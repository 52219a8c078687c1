"""Finding the reads of a tensor's value on the host (pyro_sus.syncs), which stall a GPU."""

import torch

from pyro_sus.nn import one_hot_rows
from pyro_sus.syncs import host_reads


def test_reads_of_values_and_value_sized_outputs_are_found_and_device_arithmetic_is_not():
    x = torch.randn(50)
    mask = x > 0
    assert [r.op for r in host_reads(lambda: bool(mask.any()))] == ["aten::_local_scalar_dense"]
    assert [r.op for r in host_reads(lambda: x.sum().item())] == ["aten::_local_scalar_dense"]
    assert [r.op for r in host_reads(lambda: x.masked_select(mask))] == ["aten::masked_select"]
    assert len(host_reads(lambda: x[mask])) == 1                     # indexing by a boolean mask
    assert host_reads(lambda: torch.where(mask, x, 0.0).sum() * 2) == []
    counts = torch.tensor([1, 2, 0])
    assert len(host_reads(lambda: torch.arange(3).repeat_interleave(counts))) == 1  # its total, read back
    assert host_reads(lambda: torch.arange(3).repeat_interleave(2)) == []
    read = host_reads(lambda: float(x.max()))[0]
    assert read.device == "cpu" and __file__ in read.where         # the line that asked


def test_one_hot_rows_is_one_hot_without_reading_the_ids_back():
    y = torch.tensor([[3, 0], [1, 2]])
    expected = torch.nn.functional.one_hot(y, 4).float()
    assert torch.equal(one_hot_rows(y, 4, torch.float32), expected)
    assert host_reads(lambda: one_hot_rows(y, 4, torch.float32)) == []
    assert len(host_reads(lambda: torch.nn.functional.one_hot(y, 4))) == 2  # its min and max, read back
