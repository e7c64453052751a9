"""The worker pool with real worker processes: calls, failures, deadlines, recycling, shutdown."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from pathlib import Path
from typing import Any, cast

import pytest

from monitor import stages
from monitor.app import App, pool_size, process_pool
from monitor.config import parse_config
from monitor.pipeline import PollOutcome
from monitor.pool import MB, WorkerError, WorkerPool
from monitor.stages import Stage
from monitor.storage.base import FeedState
from monitor.types import ParsedFeed
from tests.feeds import Item, article_page, many_items, rss
from tests.servers import FeedServer, alive, running, wait_for

FEED = b"<rss><channel><title>T</title><item><title>DeepSeek</title></item></channel></rss>"
MODULES = "sorted({m.split('.')[0] for m in __import__('sys').modules})"


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(2)
    yield p
    p.shutdown()


def test_a_call_runs_in_another_process_and_returns_its_value(pool: WorkerPool) -> None:
    assert pool.submit(pow, 2, 10).result(30) == 1024
    pid = pool.submit(os.getpid).result(30)
    assert pid != os.getpid()
    assert pool.pids() == [pid]
    parsed = pool.submit(stages.parse_feed, FEED, "http://example.org/").result(30)
    assert isinstance(parsed, ParsedFeed)
    assert [e.title for e in parsed.entries] == ["DeepSeek"]


def test_workers_import_only_what_their_calls_need(pool: WorkerPool) -> None:
    pool.submit(stages.parse_feed, FEED, "http://example.org/").result(30)
    pool.submit(stages.extract, b"<html><p>Text</p></html>", "http://example.org/").result(30)
    modules = pool.submit(eval, MODULES).result(30)
    assert "feedparser" in modules and "bs4" in modules
    for heavy in ("apprise", "aiohttp", "apscheduler", "yaml", "sqlite3", "multiprocessing"):
        assert heavy not in modules


def test_the_daemon_process_never_imports_the_parsing_libraries() -> None:
    code = f"import monitor.daemon, monitor.cli; print({MODULES})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = eval(out.stdout)
    assert "aiohttp" in modules and "monitor" in modules
    for heavy in ("feedparser", "bs4", "lxml", "ftfy", "apprise"):  # apprise: when it sends
        assert heavy not in modules


def test_stages_pickle_as_names_and_resolve_to_the_real_functions() -> None:
    from monitor.extract import extract
    from monitor.parse import parse_feed

    # for the type checker they are the real functions; at run time, stand-ins
    parse_stage, extract_stage = cast(Stage, stages.parse_feed), cast(Stage, stages.extract)
    assert isinstance(parse_stage, Stage) and isinstance(extract_stage, Stage)
    assert parse_stage.resolve() is parse_feed
    assert extract_stage.resolve() is extract
    copy = pickle.loads(pickle.dumps(parse_stage))
    assert copy.resolve() is parse_feed
    assert len(pickle.dumps(stages.extract)) < 100


def test_a_call_that_raises_fails_alone_with_the_remote_traceback(pool: WorkerPool) -> None:
    with pytest.raises(WorkerError, match="divmod: ZeroDivisionError") as caught:
        pool.submit(divmod, 1, 0).result(30)
    assert "Traceback" in "".join(caught.value.__notes__)
    assert pool.submit(divmod, 7, 2).result(30) == (3, 1)


def test_an_argument_that_cannot_be_sent_fails_that_call_only(pool: WorkerPool) -> None:
    with pytest.raises(WorkerError, match="cannot be sent"):
        pool.submit(len, threading.Lock()).result(30)
    assert pool.submit(len, "abc").result(30) == 3


def test_a_killed_worker_fails_its_call_and_the_next_call_gets_a_new_one(pool: WorkerPool) -> None:
    restarts: list[str] = []
    pool.on_restart = restarts.append  # the metrics' worker restarts
    pid = pool.submit(os.getpid).result(30)
    with pytest.raises(WorkerError, match="killed by SIGKILL"):
        pool.submit(os.kill, pid, signal.SIGKILL).result(30)
    assert not alive(pid)
    again = pool.submit(os.getpid).result(30)
    assert again != pid
    assert pool.started == 2
    assert restarts == ["crashed"]


def test_a_worker_killed_while_idle_costs_no_call(pool: WorkerPool) -> None:
    restarts: list[str] = []
    pool.on_restart = restarts.append
    pid = pool.submit(os.getpid).result(30)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.submit(pow, 3, 3).result(30) == 27
    assert restarts == ["crashed"]


def test_a_call_past_its_deadline_stops_its_worker_also_under_a_memory_ceiling() -> None:
    pool = WorkerPool(1, deadline=0.5, memory_limit=CEILING)
    try:
        pid = pool.submit(os.getpid).result(30)
        with pytest.raises(WorkerError, match=r"deadline of 0\.5 s"):
            pool.submit(time.sleep, 60).result(30)
        assert not alive(pid)
        assert pool.submit(pow, 2, 3).result(30) == 8
    finally:
        pool.shutdown()


def test_a_worker_whose_memory_grew_past_recycle_rss_is_replaced_after_its_call() -> None:
    pool = WorkerPool(1, recycle_rss=1 * MB)  # every worker is over 1 MB
    restarts: list[str] = []
    pool.on_restart = restarts.append
    try:
        first = pool.submit(os.getpid).result(30)
        second = pool.submit(os.getpid).result(30)
        assert first != second
        assert not alive(first)
        assert restarts[:1] == ["recycled"]
    finally:
        pool.shutdown()


_RSS = "int(open('/proc/self/statm').read().split()[1]) * __import__('os').sysconf('SC_PAGE_SIZE')"
# 80 MB of C-heap blocks (bytes over pymalloc's 512), one in a hundred kept alive
# (in builtins, past the call): the heap left in pieces, as parsing leaves it.
_CHURN = """
import builtins
blocks = [bytes(1000) for _ in range(80_000)]
builtins._kept = blocks[::100]
del blocks
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_memory_a_call_freed_is_handed_back_before_its_worker_counts_as_grown() -> None:
    probe = WorkerPool(1, recycle_rss=0)
    try:
        base = probe.submit(eval, _RSS).result(30)
    finally:
        probe.shutdown()
    pool = WorkerPool(1, recycle_rss=base + 40 * MB)
    restarts: list[str] = []
    pool.on_restart = restarts.append
    try:
        first = pool.submit(os.getpid).result(30)
        pool.submit(exec, _CHURN).result(30)  # some 80 MB freed, 0.8 MB kept
        assert pool.submit(os.getpid).result(30) == first, "recycled: the free pages counted"
        assert pool.submit(eval, _RSS).result(30) < base + 40 * MB
        assert restarts == []
    finally:
        pool.shutdown()


CEILING = 100 * MB
TOO_LARGE = r"document too large to parse \(over the worker memory limit of 100 MB\)"


def _data_limit(pid: int) -> tuple[str, str]:
    """The soft and hard RLIMIT_DATA of a process, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no data size limit in /proc/PID/limits")


def test_every_worker_runs_under_its_memory_ceiling() -> None:
    pool = WorkerPool(2, memory_limit=CEILING)
    try:
        code = "(__import__('time').sleep(0.3), __import__('os').getpid())[1]"
        pids = {f.result(30) for f in [pool.submit(eval, code) for _ in range(2)]}
        assert len(pids) == 2
        for pid in pids:
            assert _data_limit(pid) == (str(CEILING), str(CEILING))
    finally:
        pool.shutdown()


def test_a_call_past_the_memory_ceiling_fails_as_too_large_and_a_new_worker_takes_the_next() -> (
    None
):
    pool = WorkerPool(1, memory_limit=CEILING)
    try:
        pid = pool.submit(os.getpid).result(30)
        with pytest.raises(WorkerError, match="bytearray: " + TOO_LARGE) as caught:
            pool.submit(bytearray, 3 * CEILING).result(30)
        assert not getattr(caught.value, "__notes__", None)  # a big document, not a bug
        assert wait_for(lambda: not alive(pid))  # it stopped after answering
        again = pool.submit(os.getpid).result(30)
        assert again != pid and _data_limit(again)[0] == str(CEILING)
        assert pool.submit(pow, 2, 5).result(30) == 32
    finally:
        pool.shutdown()


def test_a_feed_that_parses_past_the_ceiling_fails_its_call_and_a_small_one_parses_after() -> None:
    pool = WorkerPool(1, memory_limit=64 * MB)
    try:
        with pytest.raises(WorkerError, match="parse_feed: document too large to parse"):
            pool.submit(
                stages.parse_feed, many_items(40_000).encode(), "https://big.example/"
            ).result(60)
        parsed = pool.submit(stages.parse_feed, FEED, "https://small.example/").result(30)
        assert [e.title for e in parsed.entries] == ["DeepSeek"]
    finally:
        pool.shutdown()


def test_a_page_that_extracts_past_the_ceiling_fails_its_call_instead_of_coming_back_empty() -> (
    None
):
    page = f"<html><body><article><p>{'Wort ' * 1_600_000}</p></article></body></html>"
    pool = WorkerPool(1, memory_limit=64 * MB)
    try:
        with pytest.raises(WorkerError, match="extract: document too large to parse"):
            pool.submit(stages.extract, page.encode(), "https://big.example/a").result(60)
        small = article_page("Meldung", "DeepSeek im Artikel.").encode()
        article = pool.submit(stages.extract, small, "https://x.example/").result(30)
        assert article.title == "Meldung" and "Weitere Details" in article.text
    finally:
        pool.shutdown()


def test_a_worker_that_crashes_under_the_ceiling_fails_its_call_saying_so() -> None:
    pool = WorkerPool(1, memory_limit=CEILING)
    try:
        with pytest.raises(WorkerError) as caught:
            pool.submit(os.abort).result(30)  # as a C library does when malloc fails
        assert str(caught.value) == (
            "abort: its worker was killed by SIGABRT "
            "(a crash; perhaps over the worker memory limit of 100 MB)"
        )
        assert pool.submit(pow, 2, 2).result(30) == 4
    finally:
        pool.shutdown()


def test_an_idle_worker_stops_and_a_new_call_starts_one() -> None:
    pool = WorkerPool(1, idle_timeout=0.2)
    try:
        pid = pool.submit(os.getpid).result(30)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
        assert pool.pids() == []
        assert pool.submit(os.getpid).result(30) != pid
    finally:
        pool.shutdown()


def test_a_light_load_keeps_to_one_worker(pool: WorkerPool) -> None:
    pids = {pool.submit(os.getpid).result(30) for _ in range(20)}
    assert len(pids) == 1
    assert pool.started == 1


def test_calls_run_side_by_side_when_they_overlap(pool: WorkerPool) -> None:
    code = "(__import__('time').sleep(0.5), __import__('os').getpid())[1]"
    futures = [pool.submit(eval, code) for _ in range(4)]
    assert len({f.result(30) for f in futures}) == 2


def test_shutdown_cancels_waiting_calls_stops_workers_and_refuses_new_ones() -> None:
    pool = WorkerPool(1)
    pid = pool.submit(os.getpid).result(30)
    running = pool.submit(time.sleep, 0.5)
    waiting = [pool.submit(pow, 2, i) for i in range(5)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(0) is None
    for f in waiting:
        with pytest.raises(CancelledError):
            f.result(0)
    assert not alive(pid)
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)


def test_what_a_call_writes_to_stdout_does_not_corrupt_its_reply(pool: WorkerPool) -> None:
    noise = "(print('noise ' * 5000), __import__('os').write(1, b'more noise' * 5000))[1]"
    assert pool.submit(eval, noise).result(30) == 50000
    assert pool.submit(pow, 5, 2).result(30) == 25


def test_a_result_that_cannot_be_sent_back_fails_that_call_only(pool: WorkerPool) -> None:
    pid = pool.submit(os.getpid).result(30)
    with pytest.raises(WorkerError, match="could not be sent back"):
        pool.submit(eval, "lambda: 0").result(30)
    assert pool.submit(os.getpid).result(30) == pid


def test_a_worker_that_cannot_start_fails_the_call_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = WorkerPool(1)
    try:
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")
        with pytest.raises(WorkerError, match="FileNotFoundError"):
            pool.submit(pow, 2, 2).result(30)
        monkeypatch.undo()
        assert pool.submit(pow, 2, 2).result(30) == 4
    finally:
        pool.shutdown()


def test_shutdown_waits_for_the_workers_also_after_a_shutdown_without_waiting() -> None:
    pool = WorkerPool(2)
    code = "(__import__('time').sleep(0.3), __import__('os').getpid())[1]"
    pids = {f.result(30) for f in [pool.submit(eval, code) for _ in range(2)]}
    pool.shutdown(wait=False, cancel_futures=True)  # as App.close() does
    pool.shutdown(wait=True)  # as monitor poll does then, before it exits
    assert [pid for pid in pids if alive(pid)] == []


def test_shutdown_without_waiting_kills_the_calls_still_running() -> None:
    pool = WorkerPool(1)
    pid = pool.submit(os.getpid).result(30)
    running = pool.submit(time.sleep, 60)
    assert wait_for(running.running)
    time.sleep(0.2)  # the call is in the worker now
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(WorkerError, match="killed by SIGKILL"):
        running.result(10)
    assert wait_for(lambda: not alive(pid))


def test_resize_down_stops_the_extra_worker_and_up_starts_one(pool: WorkerPool) -> None:
    overlap = "(__import__('time').sleep(0.3), __import__('os').getpid())[1]"
    assert len({f.result(30) for f in [pool.submit(eval, overlap) for _ in range(4)]}) == 2
    pool.resize(1)
    assert pool.workers == 1
    assert wait_for(lambda: len(pool.pids()) == 1)
    assert len({f.result(30) for f in [pool.submit(eval, overlap) for _ in range(4)]}) == 1
    pool.resize(2)
    assert len({f.result(30) for f in [pool.submit(eval, overlap) for _ in range(4)]}) == 2


def test_a_reload_that_changes_workers_resizes_the_pool(tmp_path: Path) -> None:
    def config(workers: int) -> Any:
        text = f"settings: {{workers: {workers}}}\nfeeds: [https://example.org/feed]\n"
        return parse_config(text, tmp_path / "feeds.yaml", {})

    pool = WorkerPool(pool_size(config(3)))
    app = App(config(3), db=str(tmp_path / "m.db"), executor=pool, console=io.StringIO())
    try:
        assert pool.workers == 3
        app.reload(config(1))
        assert pool.workers == 1
    finally:
        asyncio.run(app.close())


def test_a_reload_that_changes_worker_memory_gives_the_next_call_a_worker_with_the_new_limit(
    tmp_path: Path,
) -> None:
    def config(memory: str) -> Any:
        text = f"settings: {{worker_memory: {memory}}}\nfeeds: [https://example.org/feed]\n"
        return parse_config(text, tmp_path / "feeds.yaml", {})

    pool = process_pool(config("100MB"))
    app = App(config("100MB"), db=str(tmp_path / "m.db"), executor=pool, console=io.StringIO())
    try:
        before = pool.submit(os.getpid).result(30)
        assert _data_limit(before)[0] == str(100 * MB)
        app.reload(config("100MB"))
        assert pool.submit(os.getpid).result(30) == before  # unchanged: the worker stays
        app.reload(config("768M"))
        after = pool.submit(os.getpid).result(30)
        assert after != before and _data_limit(after)[0] == str(768 * MB)
        app.reload(config("0"))
        assert _data_limit(pool.submit(os.getpid).result(30))[0] == "unlimited"
    finally:
        asyncio.run(app.close())


class Flaky(Executor):
    """A real pool, except that calls ``fails`` picks come back failed, as from a dead worker."""

    def __init__(self, fails: Callable[[str, tuple[Any, ...]], bool]) -> None:
        self.pool = WorkerPool(1)
        self.fails = fails
        self.failed: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        name = getattr(fn, "__name__", "")
        if not self.fails(name, args):
            return self.pool.submit(fn, *args, **kwargs)
        self.failed.append(name)
        future: Future[Any] = Future()
        future.set_exception(WorkerError(f"{name}: its worker was killed by SIGKILL"))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait, cancel_futures=cancel_futures)


def _titles(entries: Any) -> list[str]:
    return [e.title for e in entries]


class World:
    """A feed server, a config and a database: polls through App.poll_round, the daemon's path."""

    def __init__(self, tmp_path: Path, feeds: FeedServer, extract: bool = False) -> None:
        self.feeds = feeds
        text = (
            f"settings: {{extract: {str(extract).lower()}}}\n"
            f"feeds: [{feeds.url('/feed.xml')}]\n"
            "rules: [{name: ds, keywords: [DeepSeek]}]\n"
        )
        self.config = parse_config(text, tmp_path / "feeds.yaml", {})
        self.db = str(tmp_path / "monitor.db")
        self.feed = self.config.feeds[0]

    def publish(self, *items: Item) -> None:
        self.feeds.put("/feed.xml", rss(list(items)))

    def poll(self, executor: Executor) -> tuple[PollOutcome, FeedState, set[str]]:
        async def run() -> tuple[PollOutcome, FeedState, set[str]]:
            app = App(self.config, db=self.db, executor=executor, console=io.StringIO())
            try:
                (outcome,) = await app.poll_round([self.feed])
                ids = [f"farm:{i}" for i in range(10)]
                seen = app.storage.seen(self.feed.key, ids, [])
                return outcome, app.storage.feed_state(self.feed.key), seen
            finally:
                await app.close()

        return asyncio.run(run())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    feeds = FeedServer()
    with running(feeds):
        yield World(tmp_path, feeds)


def test_a_parse_whose_worker_keeps_overrunning_is_not_repeated_on_the_same_bytes(
    world: World,
) -> None:
    world.publish(Item("DeepSeek auf Azure", "https://example.org/1", guid="farm:1"))
    for tries in range(1, 4):  # a worker can overrun for other reasons: three tries
        # 1 ms: a worker's start alone takes longer
        outcome, state, seen = world.poll(WorkerPool(1, deadline=0.001))
        assert outcome.error is not None and outcome.error == state.last_error
        assert outcome.error.startswith("parsing failed: parse_feed: it ran past its deadline")
        assert state.etag is None and state.body_hash is None  # fetched again ...
        assert state.failed_tries == tries and seen == set()
    # ... and the same bytes are not parsed again
    outcome, state, seen = world.poll(WorkerPool(1))
    assert outcome.error == state.last_error == state.failed_error
    assert state.error_count == 4 and seen == set()
    # new bytes are parsed
    world.publish(
        Item("DeepSeek auf Azure", "https://example.org/1", guid="farm:1"),
        Item("DeepSeek in Bayern", "https://example.org/2", guid="farm:2"),
    )
    outcome, state, seen = world.poll(WorkerPool(1))
    assert outcome.error is None and state.last_error is None and state.error_count == 0
    assert sorted(_titles(outcome.alerts)) == ["DeepSeek auf Azure", "DeepSeek in Bayern"]
    assert seen == {"farm:1", "farm:2"}


def test_matching_that_keeps_failing_stores_nothing_and_the_next_poll_alerts_once(
    world: World,
) -> None:
    world.publish(
        Item("DeepSeek eins", "https://example.org/1", guid="farm:1"),
        Item("DeepSeek zwei", "https://example.org/2", guid="farm:2"),
    )
    flaky = Flaky(lambda name, args: name == "analyze")
    outcome, state, seen = world.poll(flaky)
    assert flaky.failed == ["analyze"] * 3  # both entries together, then one at a time
    assert outcome.alerts == () and seen == set()
    assert outcome.error is not None and "matching failed" in outcome.error
    assert state.last_error == outcome.error and state.body_hash is None
    outcome, state, seen = world.poll(WorkerPool(1))
    assert sorted(_titles(outcome.alerts)) == ["DeepSeek eins", "DeepSeek zwei"]
    assert state.last_error is None and seen == {"farm:1", "farm:2"}
    outcome, _, _ = world.poll(WorkerPool(1))
    assert outcome.alerts == ()


def test_an_entry_that_kills_its_worker_costs_only_itself(world: World) -> None:
    poison = "DeepSeek Gift"
    world.publish(
        Item("DeepSeek gut", "https://example.org/1", guid="farm:1"),
        Item(poison, "https://example.org/2", guid="farm:2"),
    )
    flaky = Flaky(lambda name, args: name == "analyze" and poison in _titles(args[1]))
    outcome, state, seen = world.poll(flaky)
    assert _titles(outcome.alerts) == ["DeepSeek gut"]
    assert seen == {"farm:1"}
    assert state.last_error == outcome.error
    assert outcome.error is not None
    assert outcome.error.startswith("https://example.org/2: matching failed: analyze: its worker")
    # the poisoned entry is tried again, the good one is not sent twice
    outcome, state, seen = world.poll(WorkerPool(1))
    assert _titles(outcome.alerts) == [poison]
    assert state.last_error is None and seen == {"farm:1", "farm:2"}


def test_a_failed_extraction_matches_the_feed_text_and_says_so(tmp_path: Path) -> None:
    feeds = FeedServer()
    with running(feeds):
        world = World(tmp_path, feeds, extract=True)
        page = feeds.put("/a.html", article_page("Meldung", "DeepSeek im Artikel."), "text/html")
        world.publish(Item("Meldung", page, guid="farm:1", description="Über DeepSeek"))
        flaky = Flaky(lambda name, args: name in ("extract", "needs_article"))
        outcome, state, seen = world.poll(flaky)
        assert flaky.failed == ["needs_article", "extract"]
        assert _titles(outcome.alerts) == ["Meldung"]  # on the feed text
        assert outcome.error is None and seen == {"farm:1"}
        assert (
            state.article_error
            == f"{page}: extraction failed: extract: its worker was killed by SIGKILL"
        )
