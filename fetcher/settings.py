"""Every knob of a run in one frozen, picklable object that travels to worker processes."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from fetcher._version import __version__
from fetcher.cookies import Cookie, sendable
from fetcher.records import redact_line

MiB = 1024 * 1024
DAY = 86_400.0  # the longest --timeout or --delay taken: beyond it, waits overflow
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
_BREAK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_UNITS = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}


def parse_size(text: str) -> int:
    """`50M` → 52428800. Suffixes K, M, G, T are powers of 1024, as in curl and wget."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 1000000, 500K, 50M, 2G)")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _UNITS[unit])
    if size < 1:
        raise ValueError(f"{text!r} is too small: the size must be at least 1 byte")
    return size


def format_size(size: int) -> str:
    """52428800 → `50M`: the shortest exact form parse_size reads back."""
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def parse_header(text: str) -> tuple[str, str]:
    """`"Name: value"` → ("Name", "value"), as curl's -H takes it."""
    name, sep, value = text.partition(":")
    if not sep:  # the value may be a secret: not echoed
        raise ValueError("the value given is not a header: write it as 'Name: value'")
    name, value = name.strip(), value.strip()
    check_header(name, value)
    return name, value


def check_header(name: str, value: str) -> None:
    """ValueError unless this header can be sent; the message names the header, never its
    value (it may hold a token)."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"header name {name[:40]!r} is not a valid name")
    if _BREAK.search(value):
        raise ValueError(f"header {name}: its value holds a line break or control character")
    if not sendable(value):
        raise ValueError(f"header {name}: its value cannot be sent (not Latin-1)")


Backend = Literal["threads", "processes", "dask"]
_WHOLE = ("threads", "processes", "retries", "max_size", "max_redirects", "max_queued")
_SECONDS = ("timeout", "delay", "backoff", "backoff_max", "retry_after_max", "grace")
_FLAGS = {"threads", "processes", "retries", "max_size", "per_host", "timeout", "delay"}


def _flag(name: str) -> str:
    """A knob's name as the command line spells it, where it has one."""
    return "--" + name.replace("_", "-") if name in _FLAGS else name


PROXY_FORM = "give it as http://host:port (or https://, or socks5:// with PySocks installed)"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def proxy_problem(url: str) -> str | None:
    """Why `url` cannot be a proxy, or None; never quoting its credentials."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        return "its host or port cannot be read"
    scheme = (parts.scheme or "").lower()
    if "://" not in url or scheme not in ("http", "https", *_SOCKS):
        return PROXY_FORM
    if not parts.host:
        return "it has no host"
    if scheme in _SOCKS and importlib.util.find_spec("socks") is None:
        return "a SOCKS proxy needs PySocks: pip install pysocks"
    return None


_SOCKS = ("socks4", "socks4a", "socks5", "socks5h")


@dataclass(frozen=True)
class Settings:
    """One run's configuration, checked whole when made; the CLI takes its defaults from here."""

    out: Path = Path("pages")
    threads: int = 8
    processes: int = 0  # 0: threads in this process only
    retries: int = 3
    timeout: float = 30.0
    max_size: int = 50 * MiB
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str = f"fetcher/{__version__}"
    verify: bool | str = True  # False with --insecure, a path with --ca-bundle
    proxy: str | None = None  # every request through this proxy (else the *_proxy variables)
    cookies: tuple[Cookie, ...] = field(default=(), repr=False)  # each URL starts with these
    per_host: int | None = 8  # requests in flight to one host; None: only --threads limits
    delay: float = 0.0  # seconds between the starts of two requests to one host
    max_queued: int = 100_000  # URLs read ahead while host limits leave workers idle
    dask: str | None = None  # scheduler address, "local", or "env" (DASK_SCHEDULER_ADDRESS)
    raw: bool = False
    dedupe: bool = True
    resume: bool = False  # skip URLs the index holds as fetched
    refresh: bool = False  # send the index's validators; a 304 keeps the saved page
    max_redirects: int = 20  # as browsers and wget
    backoff: float = 0.5  # wait before the first retry; doubles each time, plus jitter
    backoff_max: float = 30.0
    retry_after_max: float = 120.0  # a longer Retry-After fails the URL at once
    grace: float = 5.0  # seconds in-flight fetches get to finish after SIGINT/SIGTERM

    def __post_init__(self) -> None:
        self._check_types()
        checks = [
            (self.threads >= 1, "--threads must be at least 1"),
            (self.processes >= 0, "--processes must be 0 or more"),
            (self.retries >= 0, "--retries must be 0 or more"),
            (0 < self.timeout <= DAY, f"--timeout must be more than 0 and at most {DAY:g} s"),
            (self.max_size >= 1, "--max-size must be 1 byte or more"),
            (self.max_redirects >= 0, "max_redirects must be 0 or more"),
            (self.per_host is None or self.per_host >= 1, "--per-host must be at least 1"),
            (0 <= self.delay <= DAY, f"--delay must be from 0 to {DAY:g} s"),
            (self.max_queued >= 1, "max_queued must be at least 1"),
            (not (self.processes and self.dask is not None), "use either --dask or --processes"),
            (not (self.resume and self.refresh), "use either --resume or --refresh"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        for knob in ("backoff", "backoff_max", "retry_after_max", "grace"):
            if not 0 <= getattr(self, knob) <= DAY:
                raise ValueError(f"{knob} must be from 0 to {DAY:g} s")
        for name, value in self.headers:
            check_header(name, value)
        problem = self.proxy and proxy_problem(self.proxy)
        if problem:
            raise ValueError(f"--proxy {redact_line(self.proxy or '')}: {problem}")

    def _check_types(self) -> None:
        """Numbers where numbers belong (a library caller may pass "4"), before comparing."""
        for name in _WHOLE + (("per_host",) if self.per_host is not None else ()):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{_flag(name)} must be a whole number")
        for name in _SECONDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{_flag(name)} must be a number of seconds")

    @property
    def backend(self) -> Backend:
        """Where the fetches run (fetcher.pools): one mode, never two at once."""
        if self.dask is not None:
            return "dask"
        return "processes" if self.processes else "threads"

    @property
    def concurrency(self) -> int:
        """How many fetches may be in flight at once."""
        return self.threads * max(1, self.processes)
