"""Feeds that answer 304 go on being polled while changed feeds wait for the workers.

A poll fetches in a poll slot (``concurrency`` of them) and trades it for a parse slot
when its document is to be parsed; a burst of changed feeds used to hold every slot for
as long as the workers took, and the unchanged feeds behind them waited.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from monitor.app import App
from monitor.config import parse_config
from tests.feeds import Item, rss
from tests.servers import FeedServer


class HeldExecutor(Executor):
    """Runs calls in a thread, each only once ``release`` was called (a slow worker)."""

    def __init__(self) -> None:
        self.threads = ThreadPoolExecutor(2)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def held() -> Any:
            self.waiting += 1
            self.gate.wait(30)
            return fn(*args, **kwargs)

        return self.threads.submit(held)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.gate.set()
        self.threads.shutdown(wait, cancel_futures=cancel_futures)


def test_an_unchanged_feed_is_polled_while_a_changed_one_waits_for_the_workers(
    tmp_path: Path, server: FeedServer
) -> None:
    changed = server.put("/changed.xml", rss([Item("First", "https://site.example/1")]))
    quiet = server.put("/quiet.xml", rss([Item("Quiet", "https://site.example/q")]))
    config = parse_config(
        "settings: {extract: false, concurrency: 1, per_host: 1, host_spacing: 0}\n"
        f"feeds: [{changed}, {quiet}]\nrules: [{{name: ds, keywords: [DeepSeek]}}]\n",
        tmp_path / "feeds.yaml",
        {},
    )
    pool = HeldExecutor()

    async def rounds() -> tuple[int | None, bool]:
        app = App(config, db=str(tmp_path / "monitor.db"), executor=pool, console=io.StringIO())
        try:
            await app.poll_round(config.feeds)  # both parsed once
            server.put("/changed.xml", rss([Item("Second", "https://site.example/2")]))
            pool.gate.clear()  # the workers are busy from now on
            first, second = config.feeds
            parsing = asyncio.create_task(app.poller.poll(first))
            while not pool.waiting or server.hits.get("/changed.xml", 0) < 2:
                await asyncio.sleep(0.01)
            # the changed feed waits for a worker; the only fetch slot is free again
            outcome = await asyncio.wait_for(app.poller.poll(second), 10)
            was_parsing = not parsing.done()
            pool.gate.set()
            assert (await parsing).new == 1
            return outcome.status, was_parsing
        finally:
            pool.gate.set()
            await app.close()

    status, was_parsing = asyncio.run(rounds())
    assert status == 304
    assert was_parsing  # polled while the other one was still with the workers
