"""loopreg.threads: a registration's CPU threads are set for its block and restored after."""

import pytest
import torch

from loopreg.threads import cpu_threads, kd_workers


def test_cpu_threads_sets_and_restores_torch_and_kd_workers():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1 and kd_workers() == 1
    assert torch.get_num_threads() == before and kd_workers() == -1


def test_cpu_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), cpu_threads(1):
        raise RuntimeError("a failed registration")
    assert torch.get_num_threads() == before and kd_workers() == -1


def test_cpu_threads_zero_leaves_the_settings():
    before = torch.get_num_threads()
    with cpu_threads(0):
        assert torch.get_num_threads() == before and kd_workers() == -1
