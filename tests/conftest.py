from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetcher.environment import Environment
from fetcher.settings import Settings
from tests.server import FaultServer

ROOT = Path(__file__).resolve().parent.parent
PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only: no proxy from the environment may take their traffic."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for fast tests: no backoff, short timeouts."""
    return Settings(out=tmp_path / "out", backoff=0, timeout=5, threads=4)


@dataclass
class Ran:
    """What an in-process run of the command gave, read as a finished process is."""

    returncode: int
    stdout: str
    stderr: str


def invoke(
    *args: str,
    stdin: str = "",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    terminal: bool = False,
) -> Ran:
    """`fetcher ARGS` run whole in this process (`cli.run`) on a fake Environment: stdin from
    `stdin`, stdout and stderr apart, stdin and stderr terminals or not; `env` adds to the
    environment for the run's duration. For what needs no process of its own: options, usage
    errors, records, the summary, exit codes."""
    from fetcher.cli import run

    out, err = io.StringIO(), io.StringIO()
    stdin_bytes = io.BytesIO(stdin.encode("utf-8", "surrogateescape"))
    given = Environment(stdin_bytes, out, err, stdin_isatty=terminal, stderr_isatty=terminal)
    with _directory(cwd), _variables(env or {}):
        code = run(list(args), given)
    return Ran(int(code), out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _directory(path: Path | None) -> Iterator[None]:
    before = os.getcwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _variables(added: dict[str, str]) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in added}
    os.environ.update(added)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """An in-process run leaves the process as it found it: signal handlers, standard streams,
    no fetcher thread still running."""
    import signal
    import threading

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    streams = (sys.stdin, sys.stdout, sys.stderr)
    yield
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert (sys.stdin, sys.stdout, sys.stderr) == streams
    lingering = [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("fetcher-") and t.name != "fetcher-watchdog" and t.is_alive()
    ]
    assert lingering == []


def run_cli(
    *args: str,
    stdin: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`fetcher ARGS` as a real process (python -m fetcher), stdout and stderr apart; `env`
    adds to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "fetcher", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**cli_env(), **(env or {})},
        cwd=cwd,
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """`fetcher ARGS` as a running process with pipes for stdin, stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "fetcher", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


# The child reports its own peak (VmHWM) as it exits: ru_maxrss would count the pages of the
# test process it was forked from.
PEAK_REPORTER = """
import atexit, sys
def report():
    status = open("/proc/self/status").read()
    sys.stderr.write(next(line for line in status.splitlines() if line.startswith("VmHWM")))
atexit.register(report)
from fetcher.cli import main
main()
"""


def run_cli_peak(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Like run_cli, and the child's peak resident memory in KiB."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_REPORTER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
    )
    head, _, peak = result.stderr.rpartition("VmHWM:")
    result.stderr = head
    return result, int(peak.split()[0])


def cli_env() -> dict[str, str]:
    """The environment for a fetcher subprocess: no proxies, this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def tls_authority():
    import trustme

    return trustme.CA()


@pytest.fixture
def tls_server(tls_authority, tmp_path: Path) -> Iterator[tuple[FaultServer, Path]]:
    """An HTTPS FaultServer with a certificate for 127.0.0.1, and the CA's PEM file."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    tls_authority.cert_pem.write_to_path(str(bundle))
    with FaultServer(tls=context) as running:
        yield running, bundle


# The index's table as fetchers before the freshness and WARC columns made it: a run must
# read such an out dir and add what it lacks.
INDEX_BEFORE_COLUMNS = (
    "CREATE TABLE pages (url TEXT PRIMARY KEY, outcome TEXT NOT NULL, final_url TEXT,"
    " status INTEGER, attempts INTEGER, elapsed REAL, error TEXT, note TEXT, changed"
    " INTEGER, path TEXT, bytes INTEGER, sha256 TEXT, content_type TEXT, encoding TEXT,"
    " etag TEXT, last_modified TEXT, fetched_at TEXT, prev_sha256 TEXT) WITHOUT ROWID"
)


def old_index(out: Path) -> sqlite3.Connection:
    """An index in `out` as an older fetcher left it: the table without the newer columns."""
    state = out / ".fetcher"
    state.mkdir(parents=True)
    db = sqlite3.connect(state / "index.sqlite3")
    db.execute(INDEX_BEFORE_COLUMNS)
    return db
