"""Peak resident memory of a block of code, for the benchmarks (Linux /proc, or CUDA)."""

from __future__ import annotations

import os
import threading
import time

import torch

__all__ = ["PeakMemory"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakMemory:
    """Context manager: ``.peak_mb`` is the peak extra memory used inside the block.

    On CUDA it reads ``torch.cuda.max_memory_allocated``; on CPU it polls the resident set
    size every millisecond from a thread and reports the maximum above the entry value.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _rss()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss())
        self.peak_mb = (self._peak - self._base) / 2**20
