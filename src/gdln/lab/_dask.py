"""The local Dask cluster of ``gdln sweep --workers N``: worker processes pinned to their cores.

XLA sizes its CPU thread pool by the cores a process may run on, so N unpinned workers each run
one compute thread per core of the machine, N x cores threads competing for the cores. Pinning
worker i to its share of the cores before it first runs JAX gives each worker's XLA its own cores:
measured on 2 cores, 2 workers training one point each of the Fig. 5c sweep (K = 9) took 20.6 s
pinned against 24.4 s unpinned (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import numpy as np
from distributed import LocalCluster, WorkerPlugin


def share(index: int, workers: int, cores: list[int]) -> set[int]:
    """The cores of worker ``index`` of ``workers``: contiguous equal shares, or one core each
    (round robin) when there are more workers than cores."""
    if workers >= len(cores):
        return {cores[index % len(cores)]}
    return {int(c) for c in np.array_split(np.asarray(cores), workers)[index]}


class LocalWorker(WorkerPlugin):
    """Set up a local worker: pin every thread (and so every thread it starts later) to its cores,
    and leave Ctrl-C to the driver, which shuts the workers down (no traceback from each worker)."""

    def __init__(self, workers: int, cores: list[int]):
        self.workers, self.cores = workers, cores

    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.workers == 1 or not self.cores or not os.path.isdir("/proc/self/task"):
            return
        mine = share(int(worker.name), self.workers, self.cores)
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), mine)
            except (ProcessLookupError, PermissionError):  # a thread that just ended
                pass


def local_cluster(workers: int | None) -> LocalCluster:
    """``workers`` processes (default: one per core) with one thread each, on the loopback interface,
    no dashboard, each pinned to its share of the cores where the OS allows it (Linux)."""
    from distributed import Client

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    n = workers or len(cores) or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=50,  # failures reach us as outcomes
                           # no dashboard; its HTTP server still needs a port: any free one, loopback only
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    with Client(cluster) as client:
        client.register_plugin(LocalWorker(n, cores), name="gdln-local-worker")
    return cluster


@contextlib.contextmanager
def sigint_flag() -> Iterator[threading.Event]:
    """While active, Ctrl-C (SIGINT) sets the yielded event instead of raising KeyboardInterrupt
    (main thread only; elsewhere the event is never set and SIGINT behaves as usual)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
