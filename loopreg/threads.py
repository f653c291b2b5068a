"""CPU threads of a registration: torch's intra-op threads and the KD-tree queries' workers.

A registration is thousands of small tensor ops and KD-tree queries. On this 2-core machine two threads
buy ~10 % alone and cost ~3x when another process keeps a core busy (torch's threads wait for each other
at every op). Twelve wild scans, median s per scan (scripts/thread_contention.py, 2026-12-06): alone, 2
threads 3.01 / 1 thread 3.33; beside a busy process 9.06 / 3.49. So a registration runs on
`REGISTER_THREADS` threads by default, and a 2-core machine can run two workers side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

REGISTER_THREADS = 1  # RegisterOptions.threads' default; 0: torch's default (one per core)

_kd_workers = -1  # scipy cKDTree.query(workers=...): -1, every core, outside `cpu_threads`


def kd_workers() -> int:
    """The `workers` argument for KD-tree queries: the current `cpu_threads` setting, else every core."""
    return _kd_workers


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with n torch threads and n KD-tree workers (n = 0: leave both as they are); the
    settings are restored after. Process-wide: for one registration at a time per process (the CLI, a
    worker)."""
    import torch  # here: the CLI reads REGISTER_THREADS without importing torch

    global _kd_workers
    if n <= 0:
        yield
        return
    old_torch, old_kd = torch.get_num_threads(), _kd_workers
    torch.set_num_threads(n)
    _kd_workers = n
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        _kd_workers = old_kd
