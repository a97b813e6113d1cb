"""A raw-socket server that answers each request with the exact bytes a test gives it, and
records what it received: which connection, which request target. Standard library only.

`answers[path]` is the bytes sent for a request of `path` (a request of any other path gets
a 404); with `keep_alive` a connection serves request after request (for answers that frame
themselves), else it is closed after each answer (which a body without a length needs).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class RawServer:
    def __init__(self, *, keep_alive: bool = False) -> None:
        self.keep_alive = keep_alive
        self.answers: dict[str, bytes] = {}
        self.received: list[tuple[int, str]] = []  # (connection number, request target)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for _, path in self.received]

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            conn.settimeout(10)
            buffered = b""
            while True:
                head, buffered = _read_head(conn, buffered)
                if head is None:
                    return
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                with self.lock:
                    self.received.append((number, target))
                try:
                    conn.sendall(self.answers.get(target, NOT_FOUND))
                except OSError:
                    return
                if not self.keep_alive:
                    return


def _read_head(conn: socket.socket, buffered: bytes) -> tuple[bytes | None, bytes]:
    """The next request's head (fetcher sends GETs: no body), and what came after it."""
    while b"\r\n\r\n" not in buffered:
        try:
            piece = conn.recv(65536)
        except OSError:
            return None, b""
        if not piece:
            return None, b""
        buffered += piece
    head, _, rest = buffered.partition(b"\r\n\r\n")
    return head, rest


@contextmanager
def raw_server(*, keep_alive: bool = False) -> Iterator[RawServer]:
    server = RawServer(keep_alive=keep_alive)
    thread = threading.Thread(target=server._accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.listener.close()
