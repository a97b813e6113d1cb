"""Shared by the benchmarks: a generated site, nginx on 127.0.0.1, timing helpers.

Everything runs on loopback; nginx comes from Debian (`apt-get install nginx-light`).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {root}/access.log;
    keepalive_requests 100000;
    sendfile on;
    types {{ text/html html; }}
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        {tls_listen}
        {tls_conf}
        root {root}/site;
    }}
}}
"""
WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_site(root: Path, pages: int, size: int = 20_000) -> list[str]:
    """`pages` HTML files of about `size` bytes under root/site; returns their paths."""
    rng = random.Random(42)
    site = root / "site" / "p"
    site.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(pages):
        words = []
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(WORDS))
        body = f"<!doctype html><html><head><meta charset=utf-8><title>page {i}</title></head>"
        body += f"<body><h1>Page {i}</h1><p>{' '.join(words)}</p></body></html>\n"
        (site / f"{i}.html").write_text(body)
        paths.append(f"/p/{i}.html")
    return paths


@contextmanager
def nginx(root: Path, tls: bool = False) -> Iterator[dict[str, int]]:
    """nginx serving root/site on 127.0.0.1; yields {"http": port, "https": port}."""
    if not shutil.which("nginx"):
        sys.exit("nginx not found: apt-get install nginx-light")
    ports = {"http": free_port(), "https": free_port() if tls else 0}
    tls_listen = tls_conf = ""
    if tls:
        _self_signed(root)
        tls_listen = f"listen 127.0.0.1:{ports['https']} ssl backlog=4096;"
        tls_conf = f"ssl_certificate {root}/cert.pem; ssl_certificate_key {root}/key.pem;"
    conf = root / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            root=root, http_port=ports["http"], tls_listen=tls_listen, tls_conf=tls_conf
        )
    )
    server = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(ports["http"])
        yield ports
    finally:
        server.terminate()
        server.wait(timeout=10)


def _self_signed(root: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def requests_logged(root: Path) -> int:
    log = root / "access.log"
    return sum(1 for _ in log.open()) if log.exists() else 0


def timed(command: Sequence[str], stdin: str | None = None) -> tuple[float, int]:
    """Wall time of a command and its exit code (output discarded)."""
    started = time.perf_counter()
    result = subprocess.run(
        command, input=stdin, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started, result.returncode


def fetcher_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fetcher", *args]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fetcher-bench-"))
    path.chmod(0o755)  # nginx's workers run as an unprivileged user
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


os.environ.pop("http_proxy", None)
os.environ.pop("HTTP_PROXY", None)
