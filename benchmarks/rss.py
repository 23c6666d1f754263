"""Resident memory of this process, and a thread that keeps its peak (for the benchmarks that
measure one phase of a process, where ``ru_maxrss`` would include what came before)."""

from __future__ import annotations

import os
import threading
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sampler(threading.Thread):
    """Samples the process RSS every millisecond (torch ops release the GIL)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.001)
