"""The shipped systemd units: `systemd-analyze security` scores them no worse than the
README says, each exposure left is explained in the unit, and systemd knows every key."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (no systemd on this machine)"
)

# unit -> the exposure README.md and the unit's comments give (lower is better)
UNITS = {"monitor.service": 1.1, "monitor-user.service": 6.2}
# Exposures explained once for a whole family of checks.
FAMILIES = ("CapabilityBoundingSet", "SystemCallFilter")
_ROW = re.compile(r"^✗ (\S+)\s.*?\s(\d+\.\d+)\s*$")
_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)")


def _analyze(*args: str) -> str:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
        timeout=60,
    )
    return done.stdout + done.stderr


def _explained(unit: str) -> str:
    """The unit's comments after the line that starts explaining what is left."""
    text = (REPO / "systemd" / unit).read_text()
    start = text.index("# What `systemd-analyze")
    return "\n".join(ln for ln in text[start:].splitlines() if ln.startswith("#"))


def _mentions(comments: str, setting: str) -> bool:
    key, _, rest = setting.partition("=")
    names = set(re.findall(r"([A-Z][A-Za-z]+)=", comments))
    prefixes = set(re.findall(r"([A-Z][A-Za-z]+)\*=", comments))
    if key not in names and not any(key.startswith(p) for p in prefixes):
        return False
    # "~AF_UNIX" and "~AF_(INET|INET6)" are separate points; capabilities are one
    return not rest.startswith("~") or key in FAMILIES or rest in comments


@pytest.mark.parametrize(("unit", "documented"), UNITS.items())
def test_the_unit_scores_no_worse_than_documented(unit: str, documented: float) -> None:
    out = _analyze("security", "--offline=true", "--no-pager", str(REPO / "systemd" / unit))
    found = _OVERALL.search(out)
    assert found, out
    assert float(found.group(1)) <= documented, out
    readme = (REPO / "README.md").read_text()
    assert f"**{documented}" in readme or f"{documented} (" in readme
    words = [w for w in (REPO / "systemd" / unit).read_text().split() if w != "#"]
    assert f"scores {documented}" in " ".join(words)


@pytest.mark.parametrize("unit", UNITS)
def test_every_exposure_left_is_explained_in_a_comment(unit: str) -> None:
    out = _analyze("security", "--offline=true", "--no-pager", str(REPO / "systemd" / unit))
    exposed = [m.group(1) for line in out.splitlines() if (m := _ROW.match(line))]
    assert exposed, out
    comments = _explained(unit)
    assert [s for s in exposed if not _mentions(comments, s)] == []


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_knows_every_key_of_the_unit(unit: str) -> None:
    # `verify` exits 0 even on unknown keys (FACTS): read what it says
    out = _analyze("verify", str(REPO / "systemd" / unit))
    problems = [
        line
        for line in out.splitlines()
        if "is not executable" not in line  # the program lives in /opt or ~/.local
        and "Failed to lookup RuntimeDirectory" not in line
        and line.strip()
    ]
    assert problems == [], out


def test_the_system_unit_denies_link_local_and_metadata_addresses_in_the_kernel() -> None:
    unit = (REPO / "systemd" / "monitor.service").read_text()
    (deny,) = [ln for ln in unit.splitlines() if ln.startswith("IPAddressDeny=")]
    assert set(deny.split("=", 1)[1].split()) == {"169.254.0.0/16", "fe80::/10", "fd00:ec2::254"}
    assert "PrivateMounts=yes" in unit.splitlines()
    assert "ExecStart=/opt/rss-monitor/venv/bin/monitor -c /etc/rss-monitor/feeds.yaml run" in unit
