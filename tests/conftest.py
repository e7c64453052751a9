"""Fixtures for every test: no daemon outlives the test that started it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    """A test that fails before it stops its `monitor run` would leave it running (and
    its workers, and its lock on the database): kill what is still there."""
    from tests.test_daemon import STARTED

    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
