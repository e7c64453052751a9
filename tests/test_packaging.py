"""A built wheel is all a machine needs: it builds without warnings, carries the schema,
and installed into a fresh venv (as the README's service install does) gives a working
`monitor`. Builds and installs for real, from the package index pip is configured with
(about 20 s)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from monitor import __version__

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # what the README makes the service's venv with


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONITOR_CONFIG", "MONITOR_DB")}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout: a build leaves build/ and *.egg-info behind, not here."""
    copy = tmp_path_factory.mktemp("src") / "rss-monitor"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", "*.db*"
        ),
        symlinks=True,
    )
    return copy


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from the checkout, and pip's verbose output of the build."""
    out = tmp_path_factory.mktemp("dist")
    done = _run(sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", out, ".", cwd=source)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("rss_monitor-*.whl")
    return built, done.stdout + done.stderr


def test_the_build_prints_no_warning(wheel: tuple[Path, str]) -> None:
    _built, log = wheel
    warnings = [
        line
        for line in log.splitlines()
        if ("Warning" in line or "deprecat" in line.lower()) and "byte-compiling" not in line
    ]
    assert warnings == []


def test_the_wheel_carries_the_package_its_schema_and_the_command(wheel: tuple[Path, str]) -> None:
    built, _log = wheel
    names = zipfile.ZipFile(built).namelist()
    assert "monitor/feeds.schema.json" in names and "monitor/cli.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "monitor = monitor.cli:main" in zipfile.ZipFile(built).read(entry_points).decode()
    assert (
        zipfile.ZipFile(built).read("monitor/feeds.schema.json")
        == (REPO / "monitor" / "feeds.schema.json").read_bytes()
    )


def test_the_wheel_installed_in_a_fresh_venv_gives_a_working_monitor(
    wheel: tuple[Path, str], tmp_path: Path
) -> None:
    built, _log = wheel
    python = SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else sys.executable
    venv = tmp_path / "venv"
    made = _run(python, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "pip", "install", "-q", built, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    monitor = venv / "bin" / "monitor"
    version = _run(monitor, "--version", cwd=tmp_path)  # not in the checkout: the wheel's code
    assert version.returncode == 0 and version.stdout.strip() == f"rss-monitor {__version__}"
    config = tmp_path / "feeds.yaml"
    shutil.copy(REPO / "feeds.yaml", config)
    check = _run(monitor, "-c", config, "check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{config}: OK" in check.stdout
    schema = _run(monitor, "schema", cwd=tmp_path)
    assert schema.stdout == (REPO / "monitor" / "feeds.schema.json").read_text()
    where = _run(
        venv / "bin" / "python", "-c", "import monitor; print(monitor.__file__)", cwd=tmp_path
    )
    assert where.stdout.startswith(str(venv)), where.stdout  # not the checkout's package
    assert not (tmp_path / "monitor.db").exists()  # check creates no database
    # PostgreSQL is an extra: without psycopg, the command says what to install
    pg = _run(
        monitor, "-c", config, "--db", "postgresql://127.0.0.1:1/news", "status", cwd=tmp_path
    )
    assert pg.returncode == 1, pg.stdout + pg.stderr
    assert "pip install 'rss-monitor[postgresql]'" in pg.stderr, pg.stderr


# pipx comes with the test tools (pyproject's `test` extra), next to this Python.
PIPX = shutil.which("pipx", path=str(Path(sys.executable).parent)) or shutil.which("pipx")


@pytest.mark.skipif(PIPX is None, reason="pipx is not installed here (make test installs it)")
def test_pipx_install_from_the_checkout_gives_a_working_monitor(
    source: Path, tmp_path: Path
) -> None:
    env_home = tmp_path / "pipx"
    env = {"PIPX_HOME": str(env_home), "PIPX_BIN_DIR": str(env_home / "bin")}
    pipx = PIPX
    assert pipx is not None
    done = subprocess.run(
        [pipx, "install", str(source)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    version = _run(env_home / "bin" / "monitor", "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"rss-monitor {__version__}"
