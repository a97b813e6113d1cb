"""One URL → one Page over HTTP: redirects, deadline, verified body, retries. No disk, no UI."""

from __future__ import annotations

import io
import itertools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

import requests
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter
from urllib3.util import parse_url

from fetcher import watchdog
from fetcher.codings import Decoder
from fetcher.errors import TRANSIENT_STATUSES, FetchError, HTTPStatusError, TooLarge
from fetcher.failures import explain, proxy_named
from fetcher.politeness import HostGate, host_of
from fetcher.records import redact
from fetcher.session import fresh_cookies
from fetcher.settings import Settings

CHUNK = 64 * 1024
DRAIN_LIMIT = 64 * 1024  # bodies we do not keep (errors, redirects) are read away up to this
CREDENTIAL_HEADERS = ("Authorization", "Cookie")  # not sent on to another site (as curl)
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Validators:
    """What --refresh sends so that an unchanged page costs a 304 and no body."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True)
class Page:
    """A successful response; `body` is None for a 304 Not Modified."""

    url: str
    final_url: str
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes | None
    attempts: int


def get_source(
    url: str,
    settings: Settings,
    session: requests.Session,
    validators: Validators | None = None,
    *,
    gate: HostGate | None = None,
    host: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Page:
    """Fetch `url`, retrying transient failures; raise FetchError with `.attempts` set.

    With a `gate`, every attempt waits for its host's turn (--delay), and a 429/503 with
    Retry-After pauses the host for every worker, not just this URL. `host` is the gate's key
    for `url` when the caller knows it already (`politeness.host_of(url)` otherwise).
    """
    headers = validators.headers() if validators else {}
    retrying = build_retrying(settings, sleep=sleep)
    if gate is not None and host is None:
        host = host_of(url)
    attempt_number = 0
    try:
        for attempt in retrying:
            attempt_number = attempt.retry_state.attempt_number
            with attempt:
                if gate is None or host is None:
                    return _attempt(url, settings, session, headers, attempt_number)
                return _gated_attempt(url, settings, session, headers, attempt_number, gate, host)
    except FetchError as exc:
        exc.attempts = attempt_number
        raise
    raise AssertionError("unreachable: tenacity reraises the last error")


def build_retrying(settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """Retry transient errors up to --retries times, backing off, honouring Retry-After."""
    backoff = wait_exponential_jitter(
        multiplier=settings.backoff, max=settings.backoff_max, jitter=settings.backoff
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        server_wait = getattr(exc, "retry_after", None) or 0.0
        return max(server_wait, backoff(state) if settings.backoff > 0 else 0.0)

    return Retrying(
        stop=stop_after_attempt(settings.retries + 1),
        wait=wait,
        retry=retry_if_exception(lambda exc: isinstance(exc, FetchError) and exc.transient),
        reraise=True,
        sleep=sleep,
    )


def _gated_attempt(
    url: str,
    settings: Settings,
    session: requests.Session,
    headers: dict[str, str],
    number: int,
    gate: HostGate,
    host: str,
) -> Page:
    """One attempt in its host's turn; a Retry-After pauses the host for every worker."""
    gate.wait_turn(host)
    try:
        return _attempt(url, settings, session, headers, number)
    except HTTPStatusError as exc:
        if exc.retry_after is not None and exc.status in (429, 503):
            gate.pause(host, min(exc.retry_after, settings.retry_after_max))
        raise
    finally:
        gate.end_turn(host)


def _attempt(
    url: str, settings: Settings, session: requests.Session, headers: dict[str, str], number: int
) -> Page:
    """One request and its redirects; the whole of it must fit in --timeout.

    The watchdog enforces that from outside (fetcher.watchdog): a read it cut short may look
    like a clean end of the body, so `fired` is checked after success as well as failure.
    """
    response = None
    with watchdog.current().armed(settings.timeout) as watch:
        try:
            response = _follow(url, settings, session, headers, watch)
            with response:
                body = _answer(response, settings, watch, conditional=bool(headers))
        except Exception as exc:
            if watch.fired:
                raise _timed_out(settings, response) from None
            raise explain(exc, settings) from None
        if watch.fired:
            raise _timed_out(settings, response)
    return Page(url, response.url, response.status_code, response.headers, body, number)


def _timed_out(settings: Settings, response: requests.Response | None) -> FetchError:
    if response is None:
        return FetchError(
            f"server did not answer within --timeout {settings.timeout:g} s", transient=True
        )
    return FetchError(f"took longer than --timeout {settings.timeout:g} s in all", transient=True)


def _follow(
    url: str,
    settings: Settings,
    session: requests.Session,
    headers: dict[str, str],
    watch: watchdog.Watch,
) -> requests.Response:
    """GET `url`, following redirects here rather than in requests, so that every hop's body
    is bounded (requests reads a redirect's whole body, however long, before following it).
    Each URL starts with no cookies; those set along its own chain apply to the next hops."""
    fresh_cookies(session, settings)
    hop_headers: dict[str, str | None] = dict(headers)
    timeout = (settings.timeout, settings.timeout)  # one wait; the watchdog bounds the whole
    for hop in itertools.count():
        watch.raise_if_fired()  # a hop's cookie work is CPU, which no socket shutdown stops
        response = _send(session, url, hop_headers, timeout)
        target = _redirect_target(session, response)
        if target is None:
            return response
        _discard(response, min(DRAIN_LIMIT, settings.max_size))
        if hop >= settings.max_redirects:
            raise FetchError(f"more than {settings.max_redirects} redirects (a redirect loop?)")
        next_url = _redirect_url(response.url, target)
        if _origin(next_url) != _origin(url):  # credentials given with -H stay with their site
            hop_headers.update(dict.fromkeys(CREDENTIAL_HEADERS))
        url = next_url
    raise AssertionError("unreachable: the loop returns or raises")


def _send(
    session: requests.Session,
    url: str,
    headers: dict[str, str | None],
    timeout: tuple[float, float],
) -> requests.Response:
    """One GET through the session's adapter, the body left unread.

    What Session.request does, less its redirect handling: even told not to follow, requests
    works out the next request of a redirect, and reads the redirect's whole body to do so.
    """
    request = session.prepare_request(requests.Request("GET", url, headers=headers))
    if session.cookies and not _cookie_given(session, headers):
        # requests copies the jar into a new one with the default policy, which sends
        # host-only cookies to subdomains; the session jar's own policy decides instead
        request.headers.pop("Cookie", None)
        request.prepare_cookies(session.cookies)
    # the session's own proxies (--proxy) passed as the request's, so no variable overrides them
    env = session.merge_environment_settings(request.url, dict(session.proxies), True, None, None)
    response = session.get_adapter(request.url or url).send(
        request,
        stream=True,
        timeout=timeout,
        verify=True if env["verify"] is None else env["verify"],
        cert=env["cert"],
        proxies=env["proxies"],
    )
    extract_cookies_to_jar(session.cookies, request, response.raw)  # type: ignore[no-untyped-call]
    return response


def _cookie_given(session: requests.Session, headers: dict[str, str | None]) -> bool:
    """Whether a Cookie header came with -H (and still applies on this hop)."""
    if "Cookie" in headers:
        return headers["Cookie"] is not None
    return "Cookie" in session.headers


def _redirect_target(session: requests.Session, response: requests.Response) -> str | None:
    try:
        return session.get_redirect_target(response)
    except UnicodeError:  # requests reads a Location's bytes as UTF-8
        raise FetchError("redirected to a Location that is not valid UTF-8") from None


def _redirect_url(current: str, target: str) -> str:
    """The absolute URL a Location names, if it is one fetcher may follow."""
    url = urljoin(current, target)
    try:
        scheme, host, _port = _origin(url)
    except ValueError:
        scheme = host = ""
    if scheme not in ("http", "https") or not host:
        raise FetchError(f"redirected to a URL that cannot be fetched: {redact(url)[:200]}")
    return url


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as urllib3 reads the URL to connect: `http://a\\@b/` goes to a,
    which urllib.parse would call b."""
    parts = parse_url(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _answer(
    response: requests.Response, settings: Settings, watch: watchdog.Watch, conditional: bool
) -> bytes | None:
    """The final response's body, or None for a 304 Not Modified; errors raise."""
    try:
        _check_status(response, settings, conditional)
    except HTTPStatusError:
        _discard(response, DRAIN_LIMIT)
        raise
    if response.status_code == 304:
        _discard(response, DRAIN_LIMIT)  # a 304 has no body, whatever its headers say
        return None
    return _read_body(response, settings, watch)


def _discard(response: requests.Response, limit: int) -> None:
    """Read away a body we do not keep, so its connection can serve again, if it declares a
    length within `limit`; any other costs the connection instead, never memory or time (a
    chunked body may end in trailer lines without end, which http.client reads all of)."""
    raw = response.raw
    try:
        length = content_length(response.headers)
    except FetchError:
        length = None
    if response.status_code < 200 or length is None or length > limit:
        response.close()  # (a 101: what follows is not HTTP, and must not be reused)
        return
    try:
        while limit > 0:
            chunk = raw.read1(min(CHUNK, limit), decode_content=False)
            if not chunk:
                raw.release_conn()
                return
            limit -= len(chunk)
    except Exception:  # a body we throw away may be as broken as it likes
        pass
    response.close()


def _check_status(response: requests.Response, settings: Settings, conditional: bool) -> None:
    code = response.status_code
    if 200 <= code < 300 or (code == 304 and conditional):
        return
    message = f"HTTP {code} {response.reason or ''}".rstrip()
    if code == 407:  # only a proxy asks this: the proxy's failure, not the site's
        raise FetchError(f"proxy failed: {message} ({proxy_named(settings)})", status=code)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    transient = code in TRANSIENT_STATUSES
    if transient and retry_after is not None and retry_after > settings.retry_after_max:
        message += (
            f" and the server asks to retry after {retry_after:.0f} s, longer than the"
            f" {settings.retry_after_max:.0f} s fetcher waits"
        )
        transient = False
    raise HTTPStatusError(message, transient=transient, status=code, retry_after=retry_after)


def _read_body(response: requests.Response, settings: Settings, watch: watchdog.Watch) -> bytes:
    """The decoded body, whole and verified, within --max-size whatever the server sends."""
    declared = content_length(response.headers)
    if declared is not None and declared > settings.max_size:
        raise _too_large(settings, f"Content-Length is {declared} bytes")
    decoder = Decoder(
        response.headers.get("Content-Encoding"), settings.max_size, watch.raise_if_fired
    )
    raw = response.raw
    body = io.BytesIO()
    while True:
        try:
            chunk = raw.read1(CHUNK, decode_content=False)
        except Exception as exc:  # urllib3 and http.client raise many kinds mid-body
            raise explain(exc, settings, body.tell()) from None
        if not chunk:
            break
        for piece in decoder.decode(chunk) if decoder else (chunk,):
            body.write(piece)
            if body.tell() > settings.max_size:
                raise _too_large(settings, f"more than {body.tell()} bytes after decompression")
    decoder.finish()
    raw.release_conn()  # read to its end: the connection can serve again
    return body.getvalue()


def content_length(headers: Mapping[str, str]) -> int | None:
    """The body length a response declares, checked as RFC 9112 §6.3 asks; None if none.

    Only ASCII digits count ("²".isdigit() is true in Python), and repeated values must
    agree. A bad one is a framing error: the response cannot be trusted to end where it says.
    A Transfer-Encoding other than exactly `chunked` (all http.client decodes) is refused:
    read as if absent, its framing would be saved as the page.
    """
    coding = headers.get("Transfer-Encoding")
    if coding is not None:
        if coding.lower() != "chunked":
            raise FetchError(f"unsupported Transfer-Encoding {coding[:40]!r}")
        return None  # chunked framing wins over any Content-Length
    value = headers.get("Content-Length")
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not all(_DIGITS.fullmatch(v) for v in values):
        raise FetchError(f"invalid Content-Length {value[:40]!r}", transient=True)
    return int(values.pop())


def _too_large(settings: Settings, detail: str) -> TooLarge:
    return TooLarge(f"larger than --max-size {settings.max_size} bytes ({detail})")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds from either of its forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())
