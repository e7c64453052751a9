"""Process-tree measurements for the benchmarks (Linux /proc): CPU, RSS, loop stalls.

The daemon's pool workers (``python -m monitor.pool``) are children of the
daemon, so "parent + children" means the whole process tree below the
measuring process, minus the processes named in ``exclude`` (the feed farm,
the SMTP sink) and multiprocessing's resource tracker: only the benchmark's
feed farm (a spawned multiprocessing child) starts one; the daemon does not
use multiprocessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def compile_package(*trees: Path) -> None:
    """Byte-compile rss-monitor (and ``trees``), as a pip or pipx install does.

    Timed runs then start as an installed rss-monitor does (and as the peers do,
    installed by pip), also where PYTHONDONTWRITEBYTECODE is set or the source
    tree is new: else every process, each pool worker included, compiles the
    package's modules from source again (50-100 ms of CPU each).
    """
    import compileall

    import monitor

    for tree in (Path(monitor.__file__).parent, *trees):
        compileall.compile_dir(str(tree), quiet=1)


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        raw = f.read()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def descendants(root: int) -> list[int]:
    """Every live process below ``root``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(_stat_fields(int(name))[1])
            children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), 0 when it is gone."""
    try:
        f = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / _TICK


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The process's RSS high-water mark since start or since :func:`reset_peak`."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> None:
    """Reset VmHWM (Linux: write 5 to clear_refs)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class Tree:
    """This process and its descendants, minus ``exclude``."""

    def __init__(self, exclude: Callable[[], Iterable[int | None]] = tuple) -> None:
        self.root = os.getpid()
        self._exclude = exclude

    def pids(self) -> list[int]:
        skip = {p for p in self._exclude() if p is not None}
        out = [self.root]
        for p in descendants(self.root):
            if p in skip or any(a in skip for a in _ancestors(p, self.root)):
                continue
            if _name(p) == "resource-tracker":  # the farm's, not the daemon's
                continue
            out.append(p)
        return out

    def cpu(self) -> dict[int, float]:
        return {p: cpu_seconds(p) for p in self.pids()}

    def rss_mb(self) -> float:
        return sum(rss_mb(p) for p in self.pids())

    def pss_mb(self) -> float:
        return sum(pss_mb(p) for p in self.pids())

    def reset_peaks(self) -> None:
        for p in self.pids():
            reset_peak(p)

    def peak_mb(self) -> float:
        """Sum of each process's peak: an upper bound of the tree's simultaneous peak."""
        return sum(peak_rss_mb(p) for p in self.pids())

    def peaks(self) -> dict[str, float]:
        """Each process's peak RSS, by a short name (main, or its command line's tail)."""
        out: dict[str, float] = {}
        for p in self.pids():
            name = "main" if p == self.root else _name(p)
            out[f"{name} {p}"] = peak_rss_mb(p)
        return out


def _name(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw if w]
    text = " ".join(words)
    if "forkserver" in text:
        return "forkserver"
    if "resource_tracker" in text:
        return "resource-tracker"
    if "monitor.pool" in text:
        return "worker"
    return "worker" if "multiprocessing" in text or "spawn" in text else text[-40:]


def _ancestors(pid: int, stop: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        while pid not in (stop, 0, 1):
            pid = int(_stat_fields(pid)[1])
            out.append(pid)
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots (processes started in between count from 0)."""
    return sum(v - before.get(p, 0.0) for p, v in after.items())


class Sampler:
    """A thread that samples the tree's summed RSS and PSS; keeps the maxima."""

    def __init__(self, tree: Tree, every: float = 0.25) -> None:
        self.tree = tree
        self.every = every
        self.max_rss = 0.0
        self.max_pss = 0.0
        self._pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        pids = self._pids  # looked up once: a scan of /proc would compete for the GIL
        self.max_rss = max(self.max_rss, sum(rss_mb(p) for p in pids))
        self.max_pss = max(self.max_pss, sum(pss_mb(p) for p in pids))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> Sampler:
        self._pids = self.tree.pids()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class StallTicker:
    """Sleeps 10 ms in a loop and records the worst lateness of the event loop."""

    def __init__(self, period: float = 0.010) -> None:
        self.period = period
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.worst = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, loop.time() - start - self.period)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class CountingExecutor(Executor):
    """Wraps the daemon's process pool and counts what is sent to it, by function name."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls[getattr(fn, "__name__", repr(fn))] += 1
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait, cancel_futures=cancel_futures)
