"""Every knob of a run in one frozen, picklable object that travels to worker processes."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from fetcher._version import __version__
from fetcher.cookies import Cookie, load_cookies, sendable
from fetcher.declare import CONCURRENCY, HTTP, INPUT, OUTPUT, RERUNS, Flag, declarations, setting
from fetcher.politeness import Delay, as_delay, delay_ok, parse_delay
from fetcher.urls import redact_line

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
_WHOLE = (
    "threads", "processes", "retries", "max_size", "max_redirects", "max_queued", "warc_max_size",
)  # fmt: skip
_SECONDS = ("timeout", "backoff", "backoff_max", "retry_after_max", "grace")


ROBOTS_ON_DASK = (
    "--robots does not work with --dask: a cluster's workers share no host gate to honour"
    " Crawl-delay in; use --processes"
)
PROXY_FORM = "give it as http://host:port (or https://, or socks5:// with PySocks installed)"


WARC_PREFIX = "--warc needs a file name prefix, such as archive/crawl (PREFIX-<time>-<n>.warc.gz)"


def _is_prefix(text: str) -> bool:
    """A WARC file prefix: a file name to go on, not a folder alone."""
    return bool(text.strip()) and text[-1] not in "/\\" and Path(text).name not in ("", "..")


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


def as_size(value: int | str) -> int:
    """A size given as a number of bytes, or as text (`parse_size`)."""
    return parse_size(value) if isinstance(value, str) else value


def as_headers(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Headers given as a dict or as (name, value) pairs."""
    pairs = value.items() if isinstance(value, Mapping) else value
    return tuple((str(name), str(text)) for name, text in pairs)


def as_cookies(value: str | Path | tuple[Cookie, ...] | None) -> tuple[Cookie, ...]:
    """Cookies given as a cookies.txt's path (`load_cookies`), or none."""
    if not value:
        return ()
    return load_cookies(value) if isinstance(value, (str, Path)) else tuple(value)


@dataclass(frozen=True)
class Settings:
    """One run's configuration, checked whole when made. Each field is a setting declared
    once (`fetcher.declare`): the command line, its --help and `fetcher.fetch` derive from it."""

    out: Path = setting(
        Path("pages"),
        Flag(("-o", "--out"), "Where pages go; made if missing.", OUTPUT, "DIR"),
        convert=Path,
    )
    threads: int = setting(
        8,
        Flag(
            ("-t", "--threads"), "Concurrent fetches (per process with --processes).",
            CONCURRENCY, "N", typer={"min": 1},
        ),
    )  # fmt: skip
    processes: int = setting(  # 0: threads in this process only
        0,
        Flag(
            ("-p", "--processes"),
            "Use N worker processes, each running --threads threads (N x threads in flight).",
            CONCURRENCY, "N", typer={"min": 0, "show_default": False},
        ),
    )  # fmt: skip
    dask: str | None = setting(  # scheduler address, "local", or "env" (DASK_SCHEDULER_ADDRESS)
        None,
        Flag(
            ("--dask",),
            "Run the fetches on a Dask cluster: a scheduler address (tcp://host:8786), 'env' "
            "for $DASK_SCHEDULER_ADDRESS, or 'local' for one on this machine. Pages are saved "
            "here. Needs the dask extra.",
            CONCURRENCY, "ADDRESS", typer={"show_default": False},
        ),
    )  # fmt: skip
    retries: int = setting(
        3,
        Flag(
            ("--retries",), "Retries of a transient failure after the first try.", HTTP, "N",
            typer={"min": 0},
        ),
    )  # fmt: skip
    timeout: float = setting(
        30.0,
        Flag(
            ("--timeout",), "Seconds for connect, for each read, and for one whole attempt.",
            HTTP, "SECONDS", typer={"min": 0.001, "max": DAY},
        ),
    )  # fmt: skip
    max_size: int = setting(
        50 * MiB,
        Flag(
            ("--max-size",), "Largest body accepted, after decompression; K, M, G suffixes.",
            HTTP, "BYTES", parser=parse_size, shown=format_size,
        ),
        convert=as_size,
    )  # fmt: skip
    headers: tuple[tuple[str, str], ...] = setting(
        (),
        Flag(
            ("-H", "--header"), "Extra request header; repeatable.", HTTP, "'Name: value'",
            type=list[str] | None, default=None, parser=parse_header,
            typer={"show_default": False},
        ),
        convert=as_headers,
    )  # fmt: skip
    user_agent: str = setting(
        f"fetcher/{__version__}",
        Flag(("-A", "--user-agent"), "User-Agent header.", HTTP, "TEXT"),
    )
    proxy: str | None = setting(  # every request through this proxy (else the *_proxy variables)
        None,
        Flag(
            ("--proxy",), "Send every request through this proxy (else the *_proxy variables).",
            HTTP, "URL", typer={"show_default": False},
        ),
    )  # fmt: skip
    cookies: tuple[Cookie, ...] = setting(  # each URL starts with these
        (),
        Flag(
            ("--cookies",),
            "Load cookies from a Netscape cookies.txt (wget --load-cookies, curl -b); "
            "otherwise each URL starts with none.",
            HTTP, "FILE", type=Path | None, default=None, typer={"show_default": False},
        ),
        convert=as_cookies,
        repr=False,
    )  # fmt: skip
    verify: bool | str = setting(  # False with --insecure, a path with --ca-bundle
        True,
        Flag(
            ("--insecure",), "Do not verify TLS certificates.", HTTP,
            type=bool, default=False, means=lambda on: False if on else None,
        ),
        Flag(
            ("--ca-bundle",),
            "Verify TLS against this CA bundle alone (a PEM file, or a folder of hashed"
            " certificates as c_rehash makes), not the system's trust store.",
            HTTP, "PATH", type=Path | None, default=None,
            means=lambda path: None if path is None else str(path),
            typer={"exists": True, "readable": True},
        ),
    )  # fmt: skip
    per_host: int | None = setting(  # requests in flight to one host; None: only --threads limits
        8,
        Flag(
            ("--per-host",), "At most N requests in flight to one host.", CONCURRENCY, "N",
            typer={"min": 1},
        ),
    )  # fmt: skip
    delay: Delay = setting(  # seconds between the starts of two requests to one host
        0.0,
        Flag(
            ("--delay",),
            "At least this long between the starts of two requests to one host; a range "
            "(1-3) waits a random time in it each time.",
            CONCURRENCY, "SECONDS", type=str | None, default=None, parser=parse_delay,
            shown=lambda _: "0",
        ),
        convert=as_delay,
    )  # fmt: skip
    robots: bool = setting(  # obey robots.txt (RFC 9309) and its Crawl-delay
        False,
        Flag(
            ("--robots",),
            "Obey each host's robots.txt (RFC 9309) for the User-Agent sent, and its "
            "Crawl-delay; without it robots.txt is never requested.",
            CONCURRENCY,
        ),
    )  # fmt: skip
    max_queued: int = setting(
        100_000, api=False
    )  # URLs read ahead while hosts' limits idle workers
    raw: bool = setting(
        False,
        Flag(("--raw",), "Save bodies byte for byte; text is not made UTF-8.", OUTPUT),
    )
    dedupe: bool = setting(
        True, Flag(("--dedupe/--no-dedupe",), "Fetch a URL listed twice only once.", INPUT)
    )
    resume: bool = setting(  # skip URLs the index holds as fetched
        False,
        Flag(("--resume",), "Skip URLs the out dir's index holds as fetched.", RERUNS),
    )
    refresh: bool = setting(  # send the index's validators; a 304 keeps the saved page
        False,
        Flag(
            ("--refresh",),
            "Conditional re-fetch (ETag / Last-Modified); a 304 keeps the saved page, and a "
            "page still fresh (Cache-Control max-age, Expires) is not requested at all.",
            RERUNS,
        ),
    )  # fmt: skip
    revalidate: bool = setting(  # --refresh asks about every page, fresh or not
        False,
        Flag(
            ("--revalidate",),
            "With --refresh, ask the server about every page, even one still fresh.", RERUNS,
        ),
    )  # fmt: skip
    max_redirects: int = setting(  # as browsers and wget
        20,
        Flag(("--max-redirect",), "Redirects followed per URL.", HTTP, "N", typer={"min": 0}),
    )
    debug: bool = setting(  # travels to worker processes: the fetch path writes the lines
        False,
        Flag(
            ("--debug",),
            "Also each request's and response's head on stderr, credentials masked (implies -v).",
            OUTPUT,
        ),
        api=False,
    )  # fmt: skip
    backoff: float = setting(0.5)  # wait before the first retry; doubles each time, plus jitter
    backoff_max: float = setting(30.0)
    retry_after_max: float = setting(120.0)  # a longer Retry-After fails the URL at once
    grace: float = setting(5.0)  # seconds in-flight fetches get to finish after SIGINT/SIGTERM
    warc: str | None = setting(  # every exchange also written as WARC records
        None,
        Flag(
            ("--warc",), "Also write every HTTP exchange (redirects, retries) as WARC/1.1 "
            "records to PREFIX-<timestamp>-<serial>.warc.gz, a CDXJ index beside each. Needs "
            "the warc extra.", OUTPUT, "PREFIX", typer={"show_default": False},
        ),
    )  # fmt: skip
    warc_max_size: int = setting(  # a WARC file this large is closed and the next begun
        1024 * MiB,
        Flag(("--warc-max-size",), "Start a new WARC file past this size; K, M, G suffixes.",
             OUTPUT, "BYTES", parser=parse_size, shown=format_size),
        convert=as_size,
    )  # fmt: skip
    warc_secrets: bool = setting(
        False,
        Flag(("--warc-secrets",), "Credentials in clear in WARC records (else masked).", OUTPUT),
    )
    pages: bool = setting(  # False: an archive-only run (--warc), nothing under --out
        True, Flag(("--pages/--no-pages",), "Save the pages (--no-pages: --warc alone).", OUTPUT)
    )

    def __post_init__(self) -> None:
        self._check_types()
        checks = [
            (self.threads >= 1, "--threads must be at least 1"),
            (self.processes >= 0, "--processes must be 0 or more"),
            (self.retries >= 0, "--retries must be 0 or more"),
            (0 < self.timeout <= DAY, f"--timeout must be more than 0 and at most {DAY:g} s"),
            (self.max_size >= 1, "--max-size must be 1 byte or more"),
            (self.max_redirects >= 0, "--max-redirect must be 0 or more"),
            (self.per_host is None or self.per_host >= 1, "--per-host must be at least 1"),
            (
                delay_ok(self.delay, DAY),
                f"--delay must be from 0 to {DAY:g} s, low-high if a range",
            ),
            (self.max_queued >= 1, "max_queued must be at least 1"),
            (not (self.processes and self.dask is not None), "use either --dask or --processes"),
            (not (self.resume and self.refresh), "use either --resume or --refresh"),
            (self.refresh or not self.revalidate, "--revalidate goes with --refresh"),
            (not (self.robots and self.dask is not None), ROBOTS_ON_DASK),
            (self.warc is None or _is_prefix(self.warc), WARC_PREFIX),
            (self.pages or self.warc is not None, "--no-pages only with --warc"),
            (not self.warc_secrets or self.warc is not None, "--warc-secrets only with --warc"),
            (self.warc_max_size >= 1, "--warc-max-size must be 1 byte or more"),
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


def _flag(name: str) -> str:
    """A setting's name as the command line spells it, where it has one."""
    flags = next(d.flags for each, _, d in declarations(Settings) if each == name)
    return flags[0].long if flags else name
