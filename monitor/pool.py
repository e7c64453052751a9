"""Worker processes for the CPU-heavy stages (parse, extract, analyze).

``WorkerPool`` is a ``concurrent.futures.Executor``: the pipeline hands it
calls through ``loop.run_in_executor``. Each worker is ``python -m
monitor.pool``, talking to one thread of the pool over its stdin and stdout
(a length-prefixed pickle per call and per reply). Why not
``ProcessPoolExecutor``:

- a worker that dies (the OOM killer, a crash in a C extension) breaks a
  ``ProcessPoolExecutor`` for good, and every later poll with it; here only
  the call in flight fails, and the next call starts a new worker;
- a call that runs past its deadline kills its worker instead of holding
  it forever;
- a worker imports only what its calls need: a spawned multiprocessing
  child re-runs the parent's main module first (``monitor run`` imports
  apprise, aiohttp, APScheduler, ...), about 18 MB per worker for nothing;
  and there is no resource-tracker process (13 MB);
- a worker whose memory grew past ``recycle_rss`` after a call (a huge
  feed) is replaced, and a worker idle for ``idle_timeout`` stops.

Calls go to the lowest-numbered idle worker, so a light load keeps one
worker busy rather than two half-idle.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MB = 1024 * 1024
_HEADER = 8  # bytes of frame length, big-endian


class WorkerError(Exception):
    """A call did not return: it raised, its worker died, or it ran past its deadline."""


# -- frames (both sides) -------------------------------------------------------


def _write_frame(out: IO[bytes], data: bytes) -> None:
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


def _read_exact(inp: IO[bytes], size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = inp.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(inp: IO[bytes]) -> bytes | None:
    """The next frame, or None at the end of the stream."""
    header = _read_exact(inp, _HEADER)
    return None if header is None else _read_exact(inp, int.from_bytes(header, "big"))


# -- the worker side ----------------------------------------------------------


def _rss() -> int:
    """This process's resident memory in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _reply(inp: bytes, recycle_rss: int) -> tuple[bytes, bool]:
    try:
        fn, args, kwargs = pickle.loads(inp)
        reply: tuple[Any, ...] = (True, fn(*args, **kwargs), None)
    except Exception as exc:
        reply = (False, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    recycle = recycle_rss > 0 and _rss() > recycle_rss
    try:
        return pickle.dumps((*reply, recycle), pickle.HIGHEST_PROTOCOL), recycle
    except Exception as exc:
        failed = (False, f"its result could not be sent back: {exc!r}", None, recycle)
        return pickle.dumps(failed, pickle.HIGHEST_PROTOCOL), recycle


def serve(inp: IO[bytes], out: IO[bytes], recycle_rss: int) -> None:
    """Answer calls until the pool closes ``inp``, or until memory says to stop."""
    while (request := _read_frame(inp)) is not None:
        data, recycle = _reply(request, recycle_rss)
        try:
            _write_frame(out, data)
            out.flush()
        except BrokenPipeError:  # the pool is gone
            return
        if recycle:
            return


def _worker_main() -> None:
    # systemd signals the whole cgroup; the pool decides when a worker stops
    # (it closes the worker's stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    # Anything a call prints goes to stderr (the journal), not into the replies.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    serve(inp, out, int(sys.argv[1]) if len(sys.argv) > 1 else 0)


# -- the pool side ------------------------------------------------------------


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"its worker was killed by {name}{hint}"
    return f"its worker exited with status {code}"


class _Process:
    """One running worker."""

    def __init__(self, recycle_rss: int) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "monitor.pool", str(recycle_rss)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            close_fds=True,
        )
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.stdin: IO[bytes] = self.popen.stdin
        self.stdout: IO[bytes] = self.popen.stdout
        self.pid = self.popen.pid

    def send(self, payload: bytes) -> bool:
        """Send a call; False when the worker is gone (nothing of the call ran)."""
        try:
            _write_frame(self.stdin, payload)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def receive(self, deadline: float) -> tuple[bool, Any, str | None, bool]:
        """The reply: (ok, value or message, remote traceback, worker stops)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.stdout, selectors.EVENT_READ)
            if not sel.select(deadline):
                self.kill()
                raise WorkerError(
                    f"it ran past its deadline of {deadline:g} s; its worker was stopped"
                )
        data = _read_frame(self.stdout)
        if data is None:
            raise WorkerError(_describe_exit(self.wait()))
        reply: tuple[bool, Any, str | None, bool] = pickle.loads(data)
        return reply

    def wait(self) -> int:
        try:
            return self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def kill(self) -> None:
        self.popen.kill()
        self.close()

    def close(self) -> None:
        """Close its stdin (the worker exits at the end of its current call) and reap it."""
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.wait()


@dataclass(slots=True)
class _Call:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _Slot:
    """A pool thread and the worker process it drives (started on demand)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.wake = threading.Event()
        self.call: _Call | None = None
        self.process: _Process | None = None
        self.thread: threading.Thread | None = None


class WorkerPool(Executor):
    """At most ``workers`` worker processes, started when calls need them."""

    def __init__(
        self,
        workers: int,
        *,
        deadline: float = 120.0,
        recycle_rss: int = 128 * MB,
        idle_timeout: float = 300.0,
    ) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.deadline = deadline
        self.recycle_rss = recycle_rss
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._slots = [_Slot(i) for i in range(workers)]
        self._idle: set[int] = set()
        self._pending: deque[_Call] = deque()
        self._shutdown = False
        self.started = 0  # worker processes started so far (for tests and benchmarks)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        call = _Call(Future(), fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit a call after shutdown")
            if self._idle:
                slot = self._slots[min(self._idle)]
                self._idle.discard(slot.index)
                slot.call = call
                slot.wake.set()
            else:
                self._pending.append(call)
                for slot in self._slots:
                    if slot.thread is None:
                        slot.thread = threading.Thread(
                            target=self._run_slot,
                            args=(slot,),
                            name=f"pool-{slot.index}",
                            daemon=True,
                        )
                        slot.thread.start()
                        break
        return call.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            threads = [s.thread for s in self._slots if s.thread is not None]
            for index in self._idle:
                self._slots[index].wake.set()
        if wait:
            for thread in threads:
                thread.join()

    def pids(self) -> list[int]:
        """The worker processes running now."""
        return [s.process.pid for s in self._slots if s.process is not None]

    # -- a slot's thread --

    def _next(self, slot: _Slot) -> _Call | None:
        """The slot's next call, or None once the pool shuts down."""
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            if self._shutdown:
                return None
            slot.wake.clear()
            self._idle.add(slot.index)
        while True:
            timeout = self.idle_timeout if slot.process is not None else None
            woken = slot.wake.wait(timeout)
            with self._lock:
                if slot.call is not None:
                    call, slot.call = slot.call, None
                    return call
                if self._shutdown:
                    self._idle.discard(slot.index)
                    return None
                slot.wake.clear()
            if not woken and slot.process is not None:
                slot.process.close()  # idle: give its memory back
                slot.process = None

    def _run_slot(self, slot: _Slot) -> None:
        try:
            while (call := self._next(slot)) is not None:
                if call.future.set_running_or_notify_cancel():
                    self._run(slot, call)
        finally:
            if slot.process is not None:
                slot.process.close()
                slot.process = None

    def _start(self) -> _Process:
        process = _Process(self.recycle_rss)
        with self._lock:
            self.started += 1
        return process

    def _run(self, slot: _Slot, call: _Call) -> None:
        name = getattr(call.fn, "__name__", repr(call.fn))
        try:
            payload = pickle.dumps((call.fn, call.args, call.kwargs), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            call.future.set_exception(WorkerError(f"{name}: cannot be sent to a worker: {exc!r}"))
            return
        try:
            if slot.process is None:
                slot.process = self._start()
            if not slot.process.send(payload):  # it died while idle: nothing ran yet
                slot.process.close()
                slot.process = self._start()
                if not slot.process.send(payload):
                    raise WorkerError(_describe_exit(slot.process.wait()))
            ok, value, remote, stops = slot.process.receive(self.deadline)
        except WorkerError as exc:
            if slot.process is not None:
                slot.process.close()
                slot.process = None
            call.future.set_exception(WorkerError(f"{name}: {exc}"))
            return
        except Exception as exc:  # e.g. the worker could not be started
            if slot.process is not None:
                slot.process.kill()
                slot.process = None
            call.future.set_exception(WorkerError(f"{name}: {exc!r}"))
            return
        if stops:  # its memory grew past recycle_rss: the next call starts a fresh one
            slot.process.close()
            slot.process = None
        if ok:
            call.future.set_result(value)
        else:
            error = WorkerError(f"{name}: {value}")
            if remote:
                error.add_note(f"in the worker:\n{remote}")
            call.future.set_exception(error)


if __name__ == "__main__":
    _worker_main()
