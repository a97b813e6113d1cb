"""Connections are the process's: shared by its threads, no more per host than --per-host,
and one the server closed is replaced, never reused (servers count what they accepted)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator

import pytest

import fetcher
from fetcher.session import pool_size
from fetcher.settings import Settings
from tests.conftest import run_cli
from tests.server import FaultServer

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")  # three hosts for --per-host: all loopback
FAST = {"backoff": 0, "timeout": 10, "retries": 0}  # a URL that fails, fails the test


@pytest.fixture
def servers() -> Iterator[list[FaultServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(FaultServer(host=host)) for host in HOSTS]


def run(urls: list[str], out: object, **options: object) -> dict[str, fetcher.Record]:
    records = fetcher.fetch(urls, out=out, **{**FAST, **options})  # type: ignore[arg-type]
    return {record.url: record for record in records}


def many(servers: list[FaultServer], count: int, route: str = "/slow/0.01?") -> list[str]:
    """`count` URLs per server, the hosts interleaved; each takes a moment to answer."""
    return [server.url(f"{route}{i}") for i in range(count) for server in servers]


def test_threads_share_connections_within_per_host(servers, tmp_path) -> None:
    records = run(many(servers, 40), tmp_path, threads=16, per_host=3)
    assert {r.outcome for r in records.values()} == {"fetched"}
    assert [1 <= s.connections <= 3 for s in servers] == [True] * 3, [
        s.connections for s in servers
    ]


def test_without_per_host_no_more_connections_than_threads(servers, tmp_path) -> None:
    records = run(many(servers[:1], 60), tmp_path, threads=5, per_host=None)
    assert {r.outcome for r in records.values()} == {"fetched"}
    assert servers[0].connections <= 5


def test_processes_share_per_host_and_the_summary_counts(servers, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(many(servers, 30)) + "\n")
    summary = tmp_path / "summary.json"
    args = ["-p", "2", "-t", "6", "--per-host", "4", "--retries", "0", "-q"]
    result = run_cli(
        str(listing), "-o", str(tmp_path / "out"), *args, "--summary-json", str(summary)
    )
    assert result.returncode == 0, result.stderr
    accepted = [s.connections for s in servers]
    assert all(1 <= n <= 4 for n in accepted), accepted
    assert json.loads(summary.read_text())["connections"] == sum(accepted)


def test_the_summary_counts_connections_of_threads(servers, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(many(servers, 20)) + "\n")
    summary = tmp_path / "summary.json"
    args = ["-t", "8", "--per-host", "2", "-q", "--summary-json", str(summary)]
    assert run_cli(str(listing), "-o", str(tmp_path / "out"), *args).returncode == 0
    assert json.loads(summary.read_text())["connections"] == sum(s.connections for s in servers)


def test_a_connection_closed_mid_run_is_replaced(server, tmp_path) -> None:
    """Every other answer closes its connection (without saying so): none is sent again on
    one, and nothing fails (--retries 0)."""
    urls = [server.url(f"/{route}/{i}") for i in range(40) for route in ("close", "page")]
    records = run(urls, tmp_path, threads=4, per_host=2)
    assert {r.outcome for r in records.values()} == {"fetched"}
    assert 40 <= server.connections <= 40 + 2


def test_connections_the_server_dropped_while_idle_are_replaced(server, tmp_path) -> None:
    """The same settings in one process share the pool across runs: a second run finds the
    first's connections closed by the server, and opens new ones rather than fail."""
    options = {"threads": 4, "per_host": 2}
    urls = [server.url(f"/slow/0.01?{i}") for i in range(20)]
    assert {r.outcome for r in run(urls, tmp_path, **options).values()} == {"fetched"}
    first = server.connections
    server.drop_connections()
    again = [server.url(f"/slow/0.01?again-{i}") for i in range(20)]
    assert {r.outcome for r in run(again, tmp_path, **options).values()} == {"fetched"}
    assert first <= 2 and server.connections - first <= 2


def test_an_answer_not_read_to_its_end_costs_its_connection(server, tmp_path) -> None:
    """A body refused (--max-size) is left unread: its connection must not serve again."""
    urls = [server.url("/big/100000"), server.url("/page/after"), server.url("/page/last")]
    records = run(urls, tmp_path, threads=1, max_size=1000)
    assert [records[u].outcome for u in urls] == ["failed", "fetched", "fetched"]
    assert server.connections == 2


@pytest.mark.parametrize(
    ("threads", "processes", "per_host", "size"),
    [(8, 0, 8, 8), (8, 0, 3, 3), (4, 0, None, 4), (4, 0, 100, 4), (8, 2, 8, 4), (8, 2, 5, 3),
     (8, 3, 1, 1), (2, 2, None, 2)],
)  # fmt: skip
def test_pool_size(threads: int, processes: int, per_host: int | None, size: int) -> None:
    settings = Settings(threads=threads, processes=processes, per_host=per_host)
    assert pool_size(settings) == size


class ClosesOnSecondRequest:
    """A server whose every connection answers one request and, sent a second, closes
    without an answer: as a server closes a kept-alive connection just as a request comes."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}{path}"

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.connections += 1
                threading.Thread(target=self._answer_once, args=(conn,), daemon=True).start()

    def _answer_once(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(self.ANSWER)
            conn.recv(65536)  # the next request: closed on, unanswered


def test_a_request_the_server_closed_on_goes_again_on_a_new_connection(tmp_path) -> None:
    server = ClosesOnSecondRequest()
    urls = [server.url(f"/{i}") for i in range(5)]
    records = run(urls, tmp_path, threads=1)
    assert [(records[u].outcome, records[u].attempts) for u in urls] == [("fetched", 1)] * 5
    assert server.connections == 5
    server.listener.close()


def test_a_request_sent_again_is_archived_once(tmp_path) -> None:
    """--warc: the request record of a URL resent on a new connection holds the request that
    got the answer, not the one the closed connection swallowed as well."""
    pytest.importorskip("warcio")
    from warcio.archiveiterator import ArchiveIterator

    server = ClosesOnSecondRequest()
    urls = [server.url(f"/{i}") for i in range(3)]
    records = run(urls, tmp_path / "out", threads=1, warc=str(tmp_path / "arc" / "crawl"))
    assert {r.outcome for r in records.values()} == {"fetched"}
    heads = []
    for path in (tmp_path / "arc").glob("*.warc.gz"):
        with path.open("rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "request":  # its head, then nothing: not sent twice
                    heads.append((record.http_headers.protocol, record.raw_stream.read()))
    assert heads == [("GET", b"")] * 3
    server.listener.close()


def test_a_kept_alive_connection_keeps_a_blocking_socket(server, tmp_path) -> None:
    """Requests run on blocking sockets (the watchdog bounds them) whose timeout urllib3 sets
    again before every request: a quiet socket makes that no system call (fetcher.watchdog)."""
    from fetcher.session import _adapters
    from fetcher.watchdog import _QuietSocket

    records = run([server.url(f"/page/{i}") for i in range(3)], tmp_path / "out", threads=1)
    assert all(r.outcome == "fetched" for r in records.values())
    socks = [
        conn.sock
        for adapter in list(_adapters.values())
        for pool in list(adapter.poolmanager.pools._container.values())
        for conn in list(pool.pool.items)
        if conn.sock is not None and conn.sock.getpeername()[1] == server.port
    ]
    assert socks and all(type(s) is _QuietSocket and s.gettimeout() is None for s in socks)


def test_a_quiet_socket_sets_a_timeout_that_changes() -> None:
    from fetcher.watchdog import _quiet

    def nonblocking(sock: socket.socket) -> bool:  # the descriptor's own state
        return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)

    left, right = socket.socketpair()
    with left, right:
        _quiet(left)
        left.settimeout(None)
        assert left.gettimeout() is None and not nonblocking(left)
        left.settimeout(2.5)  # (Python waits with poll(2) on a non-blocking descriptor)
        assert left.gettimeout() == 2.5 and nonblocking(left)
        left.settimeout(None)
        assert left.gettimeout() is None and not nonblocking(left)
