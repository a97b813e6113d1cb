"""Shared by the benchmarks: a generated site, nginx on 127.0.0.1, timing helpers.

Everything runs on loopback; nginx comes from Debian (`apt-get install nginx-light`).
"""

from __future__ import annotations

import compileall
import functools
import importlib.util
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
{load_echo}
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
    default_type text/html;
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        {tls_listen}
        {tls_conf}
        root {root}/site;
        # the same pages after a fixed delay: stands in for network latency
        location ~ ^/slow(?<page>/p/.*)$ {{ {slow} }}
        # a tiny page at any path, no file behind it: for memory at 50,000 URLs
        location /tiny/ {{ return 200 "<html><body>tiny</body></html>"; }}
    }}
}}
"""
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
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
        words, length = [], 0
        while length < size:
            words.append(rng.choice(WORDS))
            length += len(words[-1]) + 1
        body = f"<!doctype html><html><head><meta charset=utf-8><title>page {i}</title></head>"
        body += f"<body><h1>Page {i}</h1><p>{' '.join(words)}</p></body></html>\n"
        (site / f"{i}.html").write_text(body)
        paths.append(f"/p/{i}.html")
    return paths


@contextmanager
def nginx(root: Path, tls: bool = False, delay: float = 0.05) -> Iterator[dict[str, int]]:
    """nginx serving root/site on 127.0.0.1; yields {"http": port, "https": port}.

    `/slow/p/N.html` answers `/p/N.html` after `delay` seconds (needs Debian's
    libnginx-mod-http-echo; without it `/slow/` answers 404).
    """
    if not shutil.which("nginx"):
        sys.exit("nginx not found: apt-get install nginx-light")
    ports = {"http": free_port(), "https": free_port() if tls else 0}
    tls_listen = tls_conf = ""
    if tls:
        _self_signed(root)
        tls_listen = f"listen 127.0.0.1:{ports['https']} ssl backlog=4096;"
        tls_conf = f"ssl_certificate {root}/cert.pem; ssl_certificate_key {root}/key.pem;"
    conf = root / "nginx.conf"
    echo = Path(ECHO_MODULE).exists()
    conf.write_text(
        NGINX_CONF.format(
            root=root,
            http_port=ports["http"],
            tls_listen=tls_listen,
            tls_conf=tls_conf,
            load_echo=f"load_module {ECHO_MODULE};" if echo else "",
            slow=f"echo_sleep {delay}; echo_location $page;" if echo else "return 404;",
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


def timed(
    command: Sequence[str], stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[float, int]:
    """Wall time of a command and its exit code (output discarded)."""
    elapsed, code, _ = measured(command, stdin, env)
    return elapsed, code


def measured(
    command: Sequence[str], stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[float, int, int]:
    """Wall time, exit code and peak RSS in bytes of the command's own process.

    The peak is the kernel's VmHWM of the process, read until it exits (rusage's ru_maxrss
    would count the benchmark's own memory, which the child has before it execs).
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
    peak = 0
    while process.poll() is None:
        peak = max(peak, _high_water_mark(process.pid))
        time.sleep(0.01)
    return time.perf_counter() - started, process.returncode, peak


def _high_water_mark(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def fetcher_command(*args: str) -> list[str]:
    """The `fetcher` console script beside this interpreter (what users run: a worker
    process starts from it as it would), else `python -m fetcher`."""
    _compile_fetcher()
    script = Path(sys.executable).with_name("fetcher")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "fetcher", *args]


@functools.cache
def _compile_fetcher() -> None:
    """fetcher's bytecode, written once, as an install (`pip install .`) writes it: an
    editable install under PYTHONDONTWRITEBYTECODE (set on some machines, this one among
    them) would otherwise compile every module at every start, 40 ms a process, which the
    peers' installed libraries never pay."""
    spec = importlib.util.find_spec("fetcher")
    assert spec is not None and spec.submodule_search_locations, "fetcher is not installed"
    for folder in spec.submodule_search_locations:
        compileall.compile_dir(folder, quiet=1)


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
