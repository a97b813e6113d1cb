"""A hard wall-clock limit on every attempt: a watchdog thread shuts its sockets down.

A socket timeout bounds one wait, not an attempt: a server that sends a byte before each wait
runs out (headers, chunk-size lines, trailers, a TLS handshake, empty deflate blocks) keeps
a library loop alive for as long as it likes; one such host kept a nightly run alive into
the next night's. So every worker thread has one `Watch`. An attempt arms it with a deadline
(`armed`), and every socket the attempt uses is handed to it by the connection classes below,
which our sessions' adapter puts into urllib3's pools. One daemon thread per process looks at
the armed watches a few times a second and shuts down the sockets of an attempt whose deadline
has passed: wherever the worker is blocked, its next read sees the end of the stream, and
`fired` tells the attempt that it was cut off rather than finished.

The same connection classes read their responses strictly (fetcher.framing).

Per request this costs a lock taken three times and a list append; the watchdog's own work
grows with the number of threads, not with requests.

What it cannot cut short: name resolution (getaddrinfo blocks inside the C library; the
system resolver's own timeouts bound it), and the connect itself, which is bounded by a
socket timeout set to what is left of the budget (tried once per address the name has).
"""

from __future__ import annotations

import collections
import contextlib
import queue
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from fetcher import capture
from fetcher.framing import StrictResponse

TICK = 0.25  # the longest the watchdog sleeps: how late past its deadline an attempt may end
NEVER = float("inf")
MIN_CONNECT = 0.001  # a socket timeout must be positive


class Watch:
    """One thread's current attempt: its deadline and the sockets it is using."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.expires = NEVER
        self.fired = False
        self.sockets: list[socket.socket] = []
        self.owned: list[socket.socket] = []  # duplicates made for a TLS handshake
        self.opened = 0  # connections the current attempt opened (counted for the run)
        self.reused = False  # its last request went on a kept-alive connection
        self.on_sent: Callable[[], None] | None = None  # told when a request has left

    @contextmanager
    def armed(self, seconds: float) -> Iterator[Watch]:
        """Run one attempt under a deadline `seconds` from now."""
        with self.lock:
            self.expires, self.fired = time.monotonic() + seconds, False
            self.opened = 0
        try:
            yield self
        finally:
            with self.lock:
                self.expires = NEVER
                owned, self.owned, self.sockets = self.owned, [], []
            for sock in owned:
                sock.close()

    def left(self) -> float | None:
        """Seconds left before the deadline, or None when no attempt is armed."""
        expires = self.expires
        return None if expires == NEVER else max(MIN_CONNECT, expires - time.monotonic())

    def adopt(self, sock: socket.socket, *, duplicate: bool = False) -> socket.socket | None:
        """Shut `sock` down if the deadline passes while this attempt runs; the socket
        watched (None when no attempt is armed).

        `duplicate`: watch a duplicate of the descriptor, for a socket that is about to be
        wrapped in TLS (the wrapper takes the descriptor from the original object).
        """
        with self.lock:
            if self.expires == NEVER:
                return None  # no attempt armed: nothing to bound
            if duplicate:
                sock = sock.dup()
                self.owned.append(sock)
            self.sockets.append(sock)
            if self.fired:
                _shut(sock)
            return sock

    def release(self, sockets: tuple[socket.socket, ...]) -> None:
        """A connection goes back to the process's pool, where another thread's attempt may
        take it next: this attempt's deadline must no longer shut its socket down."""
        with self.lock:
            self.sockets = [s for s in self.sockets if s not in sockets]
            dropped = [s for s in self.owned if s in sockets]
            self.owned = [s for s in self.owned if s not in sockets]
        for sock in dropped:
            sock.close()

    def raise_if_fired(self) -> None:
        """For CPU work between socket reads, which shutting sockets down cannot stop."""
        if self.check(time.monotonic()) == NEVER and self.fired:
            raise TimeoutError("the attempt's deadline passed")

    def check(self, now: float) -> float:
        """Fire if the deadline has passed; the deadline still to come (or NEVER)."""
        with self.lock:
            if now < self.expires:
                return self.expires
            if self.expires != NEVER and not self.fired:
                self.fired = True
                for sock in self.sockets:
                    _shut(sock)
            return NEVER


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: its override drops the TLS state,
    # which the reading thread may be using at this moment
    with contextlib.suppress(OSError):  # already closed or never connected: nothing to cut
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_local = threading.local()
_watches: list[weakref.ref[Watch]] = []
_registry_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def current() -> Watch:
    """This thread's Watch (made, and the watchdog started, on first use)."""
    watch: Watch | None = getattr(_local, "watch", None)
    if watch is None:
        watch = _local.watch = Watch()
        _register(watch)
    return watch


def _register(watch: Watch) -> None:
    global _watchdog
    with _registry_lock:
        _watches.append(weakref.ref(watch))
        if _watchdog is None or not _watchdog.is_alive():  # e.g. in a forked child
            _watchdog = threading.Thread(target=_patrol, name="fetcher-watchdog", daemon=True)
            _watchdog.start()


def _patrol() -> None:
    while True:
        now = time.monotonic()
        with _registry_lock:
            _watches[:] = [ref for ref in _watches if ref() is not None]  # threads that ended
            watches = [w for ref in _watches if (w := ref()) is not None]
        wake = now + TICK
        for watch in watches:
            wake = min(wake, watch.check(now))
        time.sleep(max(0.001, wake - time.monotonic()))


class _Quiet:
    """A socket whose `settimeout` makes no system call when the timeout stays the same.

    urllib3 sets every connection's timeout twice per request (before sending, before the
    answer), each time an ioctl(2), and one that is not None turns a send into a poll(2) and
    a send(2): three system calls per request, each giving up the GIL, and with many worker
    threads, three hand-overs of it and back. Our requests run on blocking sockets (the
    watchdog bounds them; the connect alone waits at most what is left of the attempt), so
    the timeout of a kept-alive connection never changes.
    """

    __slots__ = ()  # (the class of a live socket is swapped for one with this mixed in)

    def settimeout(self, value: float | None) -> None:
        if value != self.gettimeout():  # type: ignore[attr-defined]
            super().settimeout(value)  # type: ignore[misc]


class _QuietSocket(_Quiet, socket.socket):
    __slots__ = ()


class _QuietSSLSocket(_Quiet, ssl.SSLSocket):
    pass


_QUIET: dict[type, type] = {socket.socket: _QuietSocket, ssl.SSLSocket: _QuietSSLSocket}


def _quiet(sock: socket.socket | None) -> None:
    """Make `sock` a quiet one (its class only: the same object, the same descriptor)."""
    quiet = _QUIET.get(type(sock))
    if quiet is not None:
        sock.__class__ = quiet


class _WatchedHTTPConnection(HTTPConnection):
    tls = False
    response_class = StrictResponse  # h11 reads the answer (fetcher.framing)

    def _new_conn(self) -> socket.socket:
        watch = current()
        left = watch.left()
        wanted = self.timeout
        if left is not None:  # the connect may wait only for what is left of the attempt
            self.timeout = min(wanted, left) if isinstance(wanted, (int, float)) else left
        try:
            sock = super()._new_conn()
        finally:
            self.timeout = wanted
        _quiet(sock)
        watch.opened += 1
        self.watched = ()
        self._watched_by(watch.adopt(sock, duplicate=self.tls))
        return sock

    # the sockets of this connection in the current attempt's Watch, which they leave when
    # the connection goes back to the pool (fetcher.session shares pools between threads)
    watched: tuple[socket.socket, ...] = ()

    def _watched_by(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self.watched = (*self.watched, sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, or one just made
            self._watched_by(current().adopt(self.sock))
        if (tape := capture.current()) is not None:
            tape.resend()
        super().request(*args, **kwargs)
        if (sent := current().on_sent) is not None:
            sent()

    def connect(self) -> None:
        with capture.paused():  # a proxy's CONNECT is not the request
            super().connect()
        _quiet(self.sock)  # (TLS: a new socket object wraps the connected one)

    def send(self, data: Any) -> None:
        """Send, and hand the bytes to the URL's tape if it is recorded (--warc)."""
        tape = capture.current()
        if tape is None:
            return super().send(data)
        if self.sock is None:  # (http.client would connect inside send)
            self.connect()
        super().send(data)
        tape.sent(bytes(data), None if getattr(self, "proxy", None) else _peer(self.sock))
        return None


def _peer(sock: socket.socket | None) -> str | None:
    try:
        return str(sock.getpeername()[0]) if sock is not None else None
    except OSError:
        return None


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    tls = True


class _Stack:
    """The connections a pool keeps, last in first out, for a pool that never blocks: a
    deque's pop and append are atomic, where urllib3's LifoQueue takes a lock and a condition
    for each (contended by every thread a pool serves: a GIL hand-off each time)."""

    def __init__(self, maxsize: int) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.maxsize = maxsize

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return self.items.pop()
        except IndexError:
            raise queue.Empty from None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if len(self.items) >= self.maxsize:  # (pool_block is off: get never waits either)
            raise queue.Full
        self.items.append(item)

    def qsize(self) -> int:
        return len(self.items)


class _Shared(HTTPConnectionPool):
    """A pool shared by threads: a connection put back leaves its attempt's Watch."""

    QueueCls = _Stack  # type: ignore[assignment]

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        current().reused = getattr(conn, "sock", None) is not None  # (a dropped one: None)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if getattr(conn, "watched", None):
            current().release(conn.watched)
            conn.watched = ()
        super()._put_conn(conn)


class _WatchedHTTPPool(_Shared):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_Shared, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, with pools whose connections report their sockets to the Watch."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> poolmanager.PoolManager:
        manager: poolmanager.PoolManager = super().proxy_manager_for(proxy, **kwargs)
        _watch_pools(manager)
        return manager


def _watch_pools(manager: poolmanager.PoolManager) -> None:
    # only the standard pools: a SOCKS manager brings its own, which we leave alone
    if manager.pool_classes_by_scheme is poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = _POOLS
