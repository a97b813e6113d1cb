"""--debug: each request's and each response's head (the request line or status line, and the
headers), as curl -v shows them, credentials masked. Written from the fetch path, in whichever
process fetches: the run's own (threads), each worker process (--processes: to the standard
error it shares with the run), each Dask worker (--dask: to that worker's standard error)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import requests

from fetcher.urls import printable, redact

SECRETS = frozenset({"authorization", "proxy-authorization"})  # scheme kept, the rest masked
COOKIES = frozenset({"cookie", "set-cookie"})  # names kept, values masked
URLS = frozenset({"location", "content-location", "referer", "link"})  # userinfo masked
_VERSIONS = {10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}
_sink: Callable[[str], None] | None = None  # where the text goes; None: sys.stderr


@contextlib.contextmanager
def writing_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Debug text goes to `sink` while this is held (the command's stderr, above the bar)."""
    global _sink
    before, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = before


def exchange(response: requests.Response) -> None:
    """One request and its response, as one piece of text (threads do not interleave it)."""
    text = "\n".join([*request_head(response.request), *response_head(response)])
    if _sink is not None:
        _sink(text)
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr closed: no debug
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def request_head(request: requests.PreparedRequest) -> list[str]:
    """`> GET URL` and `> Name: value` lines of a request as sent (urllib3 adds Host)."""
    lines = [f"> {request.method} {printable(redact(request.url or ''))}"]
    return lines + [f"> {name}: {masked(name, value)}" for name, value in request.headers.items()]


def response_head(response: requests.Response) -> list[str]:
    """`< HTTP/1.1 200 OK` and `< Name: value` lines, each header as received (repeats kept)."""
    version = _VERSIONS.get(getattr(response.raw, "version", 11), "HTTP")
    lines = [f"< {version} {response.status_code} {printable(response.reason or '')}".rstrip()]
    headers = getattr(response.raw, "headers", None) or response.headers
    return lines + [f"< {name}: {masked(name, value)}" for name, value in headers.items()]


def masked(name: str, value: str) -> str:
    """A header's value as it may be shown: credentials, cookie values and URLs' user:password
    masked, control characters escaped."""
    key = name.lower()
    if key in SECRETS:
        scheme, space, _ = value.partition(" ")
        value = f"{scheme} ***" if space else "***"
    elif key in COOKIES:
        value = _cookies_masked(value, key == "set-cookie")
    elif key in URLS:
        value = redact(value)
    return printable(value)


def _cookies_masked(value: str, set_cookie: bool) -> str:
    """`a=***; b=***` for Cookie; for Set-Cookie the first pair's value alone (the rest are
    attributes: Path, Expires, ...)."""
    pairs = value.split(";")
    count = 1 if set_cookie else len(pairs)
    for i in range(count):
        name, sep, _ = pairs[i].partition("=")
        pairs[i] = f"{name}=***" if sep else pairs[i]
    return ";".join(pairs)
