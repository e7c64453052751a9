"""Worker processes for the CPU-heavy stages (parse, extract, analyze).

``WorkerPool`` is a ``concurrent.futures.Executor``: the pipeline hands it
calls through ``loop.run_in_executor``. Each worker is ``python -m
monitor.pool``, talking to one thread of the pool over its stdin and stdout
(a frame per call and per reply: a marker, a length, a pickle). Why not
``ProcessPoolExecutor``:

- a worker that dies (the OOM killer, a crash in a C extension) breaks a
  ``ProcessPoolExecutor`` for good, and every later poll with it; here only
  the call in flight fails, and the next call starts a new worker;
- a call that runs past its deadline (sending, running and answering) kills
  its worker instead of holding it forever;
- a worker imports only what its calls need: a spawned multiprocessing
  child re-runs the parent's main module first (``monitor run`` imports
  apprise, aiohttp, APScheduler, ...), about 18 MB per worker for nothing;
  and there is no resource-tracker process (13 MB);
- a worker whose memory grew past ``recycle_rss`` after a call (a huge
  feed) is replaced, and a worker idle for ``idle_timeout`` stops;
- each worker runs under a memory ceiling (``memory_limit``): a parser
  blow-up nobody thought of fails its call with "document too large to
  parse" within a fraction of a second, and the worker is replaced, instead of
  growing for a minute to gigabytes while every other feed waits.

Calls go to the lowest-numbered idle worker, so a light load keeps one
worker busy rather than two half-idle.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import selectors
import signal
import site
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

MB = 1024 * 1024
_MARKER = b"RSM\x01"  # starts every frame: anything else on the pipe is not ours
_HEADER = len(_MARKER) + 8  # marker, then the pickle's length (big-endian)
_EXIT_OUT_OF_MEMORY = 3  # a worker that could not even read its call
# A worker starts at about 45 MB; past this after a call it is replaced (a fresh one
# costs some 0.1 s of CPU), so the daemon and two workers stay well under 300 MB.
RECYCLE_RSS = 96 * MB
_CRASHES = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)  # a C library's failed malloc, often


class WorkerError(Exception):
    """A call did not return: it raised, its worker died, or it ran past its deadline.

    ``crashed`` is true when the worker died or overran (killed by a signal, the
    OOM killer, an exit, the deadline): that may be the call's doing or not (an
    operator's ``kill``, a machine short of memory). A call that raised (or ran
    into the memory ceiling) failed for its own sake and would again.
    """

    def __init__(self, message: str, *, crashed: bool = False) -> None:
        super().__init__(message)
        self.crashed = crashed


class _NotSent(Exception):
    """The worker was gone before any byte of the call reached it."""


def _limit(memory_limit: int) -> str:
    return f"the worker memory limit of {memory_limit / MB:.4g} MB"


def _too_large(memory_limit: int) -> str:
    """The error of a call that ran out of memory in its worker."""
    if memory_limit > 0:
        return f"document too large to parse (over {_limit(memory_limit)})"
    return "document too large to parse (out of memory)"


# -- frames (both sides) -------------------------------------------------------


def _remaining(end: float | None) -> float | None:
    return None if end is None else max(0.0, end - time.monotonic())


def _write_all(fd: int, data: bytes, end: float | None) -> None:
    """Write a frame holding ``data``; TimeoutError past ``end`` (None: no limit)."""
    parts = [memoryview(_MARKER + len(data).to_bytes(8, "big")), memoryview(data)]
    sent = 0
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_WRITE)
        while parts:
            if not sel.select(_remaining(end)):
                raise TimeoutError
            try:
                n = os.writev(fd, parts)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                if sent == 0:
                    raise _NotSent from None
                raise
            sent += n
            while n:
                if n >= len(parts[0]):
                    n -= len(parts.pop(0))
                else:
                    parts[0], n = parts[0][n:], 0


def _read_exact(fd: int, size: int, end: float | None, sel: selectors.BaseSelector) -> bytearray:
    """``size`` bytes; EOFError at the end of the stream, TimeoutError past ``end``."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        if not sel.select(_remaining(end)):
            raise TimeoutError
        try:
            n = os.readv(fd, [view[got:]])
        except BlockingIOError:
            continue
        if n == 0:
            raise EOFError
        got += n
    return buf


def _read_frame(fd: int, end: float | None) -> bytearray:
    """The next frame's pickle; EOFError at the end, ValueError for bytes that are not a frame."""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        header = _read_exact(fd, _HEADER, end, sel)
        if header[: len(_MARKER)] != _MARKER:
            raise ValueError(f"not a frame: {bytes(header)!r}")
        return _read_exact(fd, int.from_bytes(header[len(_MARKER) :], "big"), end, sel)


# -- the worker side ----------------------------------------------------------


def _rss() -> int:
    """This process's resident memory in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _trim() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``).

    lxml's trees and the fetched bodies live in the C heap; once freed, their pages
    mostly stay with the process, in pieces between live blocks, and a worker's RSS
    creeps up call by call. Trimmed before a worker is judged too big, that free
    memory does not count as growth (and does not cost a worker start).
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to trim
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _grown(recycle_rss: int) -> bool:
    """Whether this worker's memory is past ``recycle_rss`` (0: never), free pages
    handed back first."""
    if recycle_rss <= 0 or _rss() <= recycle_rss:
        return False
    _trim()
    return _rss() > recycle_rss


def _reply(request: bytearray, recycle_rss: int, memory_limit: int) -> tuple[bytes, bool]:
    """Run the call in ``request``: its reply frame, and whether this worker stops after it.

    A call that runs out of memory (anywhere: parse, extract, analyze) is a
    document too large, not a bug: no traceback, and the worker stops, as its
    heap may be left in pieces; the next call gets a fresh one. Under a memory
    limit that includes a SystemError: C code whose allocation fails can return
    without setting MemoryError (seen here: "error return without exception
    set" at a plain function call, when the interpreter could not get a frame).
    """
    out_of_memory = False
    try:
        fn, args, kwargs = pickle.loads(request)
        del request
        reply: tuple[Any, ...] = (True, fn(*args, **kwargs), None)
    except Exception as exc:
        if isinstance(exc, MemoryError) or (isinstance(exc, SystemError) and memory_limit > 0):
            out_of_memory = True  # answered below, once the frames holding the memory are gone
        else:
            reply = (False, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    if out_of_memory:
        reply = (False, _too_large(memory_limit), None)
    stop = out_of_memory or _grown(recycle_rss)
    try:
        return pickle.dumps((*reply, stop), pickle.HIGHEST_PROTOCOL), stop
    except MemoryError:
        return pickle.dumps((False, _too_large(memory_limit), None, True)), True
    except Exception as exc:
        failed = (False, f"its result could not be sent back: {exc!r}", None, stop)
        return pickle.dumps(failed, pickle.HIGHEST_PROTOCOL), stop


def _limit_memory(limit: int) -> None:
    """Cap this process's data segment at ``limit`` bytes (0: no cap), for good.

    RLIMIT_DATA rather than RLIMIT_AS: since Linux 4.7 it counts what a process
    can fill (the heap and private writable mappings: Python's arenas, a big
    string) and not address space that holds none of it (code and shared
    libraries, the stack, arena space reserved but not yet usable), so the
    limit means what it says and a library that maps more code or starts a
    thread does not use it up. An allocation past it fails, which Python
    raises as MemoryError. The hard limit goes down too, so no library in the
    worker can lift it.
    """
    if limit <= 0:
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def serve(inp: int, out: int, recycle_rss: int, memory_limit: int = 0) -> None:
    """Answer calls until the pool closes ``inp``, or until memory says to stop."""
    while True:
        try:
            request = _read_frame(inp, None)
        except (EOFError, ValueError):  # the pool closed the pipe (or is not a pool)
            return
        except MemoryError:  # the call itself does not fit: its exit status says so
            raise SystemExit(_EXIT_OUT_OF_MEMORY) from None
        data, recycle = _reply(request, recycle_rss, memory_limit)
        del request
        try:
            _write_all(out, data, None)
        except (_NotSent, BrokenPipeError):  # the pool is gone
            return
        if recycle:
            return


def _worker_main() -> None:
    # systemd signals the whole cgroup; the pool decides when a worker stops
    # (it closes the worker's stdin, or kills a worker that overran).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = os.dup(0), os.dup(1)
    # Anything a call prints goes to stderr (the journal), not into the replies.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    recycle_rss = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    memory_limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    _limit_memory(memory_limit)
    serve(inp, out, recycle_rss, memory_limit)


# -- the pool side ------------------------------------------------------------


def _describe_exit(code: int, memory_limit: int) -> str:
    if code == _EXIT_OUT_OF_MEMORY:
        return _too_large(memory_limit)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ""
        if -code == signal.SIGKILL:
            hint = " (out of memory?)"
        elif -code in _CRASHES and memory_limit > 0:
            hint = f" (a crash; perhaps over {_limit(memory_limit)})"
        return f"its worker was killed by {name}{hint}"
    return f"its worker exited with status {code}"


def _worker_env() -> dict[str, str]:
    """The daemon's environment; in a source checkout, also where ``monitor`` is."""
    env = dict(os.environ)
    root = Path(__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    return env


class _Process:
    """One running worker."""

    def __init__(self, recycle_rss: int, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        # -P: the working directory (under systemd, the state directory) is not
        # put on the worker's import path.
        self.popen = subprocess.Popen(
            [sys.executable, "-P", "-m", "monitor.pool", str(recycle_rss), str(memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=_worker_env(),
            close_fds=True,
        )
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.pid = self.popen.pid
        self.calls = 0
        os.set_blocking(self.popen.stdin.fileno(), False)

    def call(self, payload: bytes, deadline: float) -> tuple[bool, Any, str | None, bool]:
        """Send a call and read its reply: (ok, value or message, remote traceback, stops).

        _NotSent when the worker was already gone; WorkerError (and the worker
        is dead) when it died or overran during the call.
        """
        assert self.popen.stdin is not None and self.popen.stdout is not None
        end = time.monotonic() + deadline
        self.calls += 1
        try:
            _write_all(self.popen.stdin.fileno(), payload, end)
            data = _read_frame(self.popen.stdout.fileno(), end)
        except TimeoutError:
            self.kill()
            raise WorkerError(
                f"it ran past its deadline of {deadline:g} s; its worker was stopped",
                crashed=True,
            ) from None
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.close()
            code = self.wait()
            # A first call that ends in an exit status (not a signal): it never got to run.
            started = self.calls > 1 or code < 0 or code == _EXIT_OUT_OF_MEMORY
            hint = "" if started else " before its first call (see its error in the log)"
            raise WorkerError(
                _describe_exit(code, self.memory_limit) + hint, crashed=True
            ) from None
        except ValueError as exc:
            self.kill()
            raise WorkerError(
                f"its worker wrote something that is not a reply: {exc}", crashed=True
            ) from None
        try:
            reply: tuple[bool, Any, str | None, bool] = pickle.loads(data)
        except Exception as exc:  # the stream is still in step: the worker can stay
            return (False, f"its reply could not be read: {exc!r}", None, False)
        return reply

    def wait(self) -> int:
        try:
            return self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()
        self.close()

    def close(self) -> None:
        """Close its stdin (the worker exits at the end of its current call) and reap it."""
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.wait()


@dataclass(slots=True)
class _Call:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


_STOP = object()


class _Slot:
    """A pool thread and the worker process it drives (started on demand)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.wake = threading.Event()
        self.call: _Call | None = None  # handed over by submit() while idle
        self.busy: _Process | None = None  # the process of the call in flight
        self.process: _Process | None = None
        self.thread: threading.Thread | None = None


class WorkerPool(Executor):
    """At most ``workers`` worker processes, started when calls need them.

    ``memory_limit``: the bytes of data each worker may allocate (0: no
    limit); a call past it fails with "document too large to parse".
    """

    def __init__(
        self,
        workers: int,
        *,
        deadline: float = 120.0,
        recycle_rss: int = RECYCLE_RSS,
        idle_timeout: float = 300.0,
        memory_limit: int = 0,
    ) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.deadline = deadline
        self.recycle_rss = recycle_rss
        self.idle_timeout = idle_timeout
        self.memory_limit = memory_limit
        self._lock = threading.Lock()
        self._slots = [_Slot(i) for i in range(workers)]
        self._limit = workers
        self._idle: set[int] = set()
        self._pending: deque[_Call] = deque()
        self._shutdown = False
        self.started = 0  # worker processes started so far (for tests and benchmarks)
        # told (in a pool thread) of each worker lost in a call or to it ("crashed") and each
        # replaced because its memory grew ("recycled"): the metrics' worker restarts
        self.on_restart: Callable[[str], None] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        call = _Call(Future(), fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit a call after shutdown")
            if self._idle:
                slot = self._slots[min(self._idle)]  # only slots below the limit are idle
                self._idle.discard(slot.index)
                slot.call = call
                slot.wake.set()
                return call.future
            self._pending.append(call)
            for slot in self._slots[: self._limit]:
                if slot.thread is None:
                    slot.thread = threading.Thread(
                        target=self._run_slot, args=(slot,), name=f"pool-{slot.index}", daemon=True
                    )
                    slot.thread.start()
                    break
        return call.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls. ``wait=False`` abandons the calls still running: their workers
        are killed (the daemon is exiting; their results would go nowhere)."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            threads = [s.thread for s in self._slots if s.thread is not None]
            busy = [s.busy for s in self._slots if s.busy is not None]
            for index in self._idle:
                self._slots[index].wake.set()
        if wait:
            for thread in threads:
                thread.join()
        else:
            for process in busy:
                with contextlib.suppress(OSError):
                    process.popen.kill()

    def resize(self, workers: int) -> None:
        """Use at most ``workers`` workers from now on.

        A worker beyond the new number finishes its call (and any calls
        waiting) and stops.
        """
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        with self._lock:
            self._slots.extend(_Slot(i) for i in range(len(self._slots), workers))
            self._limit = workers
            for index in [i for i in self._idle if i >= workers]:
                self._idle.discard(index)
                self._slots[index].wake.set()

    def set_memory_limit(self, limit: int) -> None:
        """Workers started from now on get ``limit``; a running one is replaced before its
        next call (a worker's limit can't be raised from outside, nor safely lowered)."""
        self.memory_limit = limit

    @property
    def workers(self) -> int:
        """The most worker processes this pool runs at once."""
        return self._limit

    def pids(self) -> list[int]:
        """The worker processes running now."""
        return [s.process.pid for s in self._slots if s.process is not None]

    # -- a slot's thread --

    def _run_slot(self, slot: _Slot) -> None:
        try:
            claimed = self._claim(slot)
            while True:
                call = self._wait(slot) if claimed is None else claimed
                if not isinstance(call, _Call):
                    return
                finish = (
                    self._call(slot, call) if call.future.set_running_or_notify_cancel() else None
                )
                # Idle (or on to the next call) before the caller hears back, so a
                # caller that submits right away finds this slot and not another.
                claimed = self._claim(slot)
                if finish is not None:
                    finish()
        finally:
            # The worker goes before the slot is free: shutdown(wait=True) joins
            # only threads it still sees, and a new thread must not find it.
            self._drop(slot)
            with self._lock:
                slot.thread = None
                self._idle.discard(slot.index)

    def _claim(self, slot: _Slot) -> _Call | object | None:
        """The next waiting call, _STOP at shutdown, or None: the slot is idle now."""
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            if self._shutdown or slot.index >= self._limit:
                return _STOP
            slot.wake.clear()
            self._idle.add(slot.index)
            return None

    def _wait(self, slot: _Slot) -> _Call | None:
        """The call submit() hands this idle slot; None at shutdown."""
        while True:
            timeout = self.idle_timeout if slot.process is not None else None
            woken = slot.wake.wait(timeout)
            with self._lock:
                if slot.call is not None:
                    call, slot.call = slot.call, None
                    return call
                if self._shutdown or slot.index >= self._limit:
                    self._idle.discard(slot.index)
                    return None
                slot.wake.clear()
            if not woken:
                self._drop(slot)  # idle: give its memory back

    def _restarted(self, reason: str) -> None:
        if self.on_restart is not None:
            with contextlib.suppress(Exception):  # counting must never fail a call
                self.on_restart(reason)

    def _drop(self, slot: _Slot) -> None:
        if slot.process is not None:
            slot.process.close()
            slot.process = None

    def _start(self) -> _Process:
        process = _Process(self.recycle_rss, self.memory_limit)
        with self._lock:
            self.started += 1
        return process

    def _exchange(self, slot: _Slot, payload: bytes) -> tuple[bool, Any, str | None, bool]:
        if slot.process is not None and slot.process.memory_limit != self.memory_limit:
            self._drop(slot)  # the limit changed (a reload): a new worker gets the new one
        # A worker that died while idle costs no call: nothing of it ran, so
        # it goes to a new worker once. A new worker that is gone at once failed to start.
        may_retry = slot.process is not None
        while True:
            if slot.process is None:
                slot.process = self._start()
            slot.busy = slot.process
            try:
                return slot.process.call(payload, self.deadline)
            except _NotSent:
                self._drop(slot)
                if not may_retry:
                    raise WorkerError(
                        "its worker exited at start (see its error in the log)", crashed=True
                    ) from None
                self._restarted("crashed")  # it died while idle
                may_retry = False
            except WorkerError:
                slot.process = None  # dead and reaped
                raise
            finally:
                slot.busy = None

    def _call(self, slot: _Slot, call: _Call) -> Callable[[], None]:
        """Run ``call`` in the slot's worker; returns what completes its future."""
        future = call.future
        name = getattr(call.fn, "__name__", repr(call.fn))
        try:
            payload = pickle.dumps((call.fn, call.args, call.kwargs), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            return partial(future.set_exception, WorkerError(f"{name}: cannot be sent: {exc!r}"))
        try:
            ok, value, remote, stops = self._exchange(slot, payload)
        except WorkerError as exc:
            if exc.crashed:
                self._restarted("crashed")
            error = WorkerError(f"{name}: {exc}", crashed=exc.crashed)
            return partial(future.set_exception, error)
        except Exception as exc:  # e.g. no worker could be started
            if slot.process is not None:
                slot.process.kill()
                slot.process = None
            return partial(future.set_exception, WorkerError(f"{name}: {exc!r}"))
        if stops:  # its memory grew past recycle_rss: the next call starts a fresh one
            self._drop(slot)
            self._restarted("recycled")
        if ok:
            return partial(future.set_result, value)
        error = WorkerError(f"{name}: {value}")
        if remote:
            error.add_note(f"in the worker:\n{remote}")
        return partial(future.set_exception, error)


if __name__ == "__main__":
    _worker_main()
