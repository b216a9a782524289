"""Host ↔ device copies (flashvsr.transfer): the values arrive unchanged."""

from __future__ import annotations

import pytest
import torch

from flashvsr.transfer import to_device, to_pinned_host

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_gives_the_same_values_there(device):
    t = torch.randn(5, 7, dtype=torch.float64)
    moved = to_device(t, torch.device(device))
    assert moved.device.type == device and moved.dtype == t.dtype
    assert torch.equal(moved.cpu(), t)  # .cpu() waits for the queued copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a GPU")
def test_a_pinned_host_copy_holds_the_gpu_values_once_the_stream_has_run():
    t = torch.randn(3, 4, device="cuda")
    host = to_pinned_host(t)
    torch.cuda.current_stream().synchronize()
    assert host.is_pinned() and torch.equal(host, t.cpu())
