"""One URL → one Page over HTTP: redirects, deadline, verified body, retries. No disk, no UI."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import requests
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_netrc_auth
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter
from urllib3.util import parse_url

from fetcher import capture, trace, watchdog
from fetcher.errors import FetchError, HTTPStatusError, TooLarge
from fetcher.failures import explain
from fetcher.politeness import HostGate, host_of
from fetcher.response import DRAIN_LIMIT, answer, discard
from fetcher.session import fresh_cookies, per_thread
from fetcher.settings import Settings
from fetcher.urls import redact, without_dot_segments

CREDENTIAL_HEADERS = ("Authorization", "Cookie")  # not sent on to another site (as curl)


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
    requested_at: float = 0.0  # seconds since the epoch: this attempt's request went out
    responded_at: float = 0.0  # and its final answer's head came (RFC 9111 §4.2.3)


@dataclass(frozen=True)
class Attempt:
    """What every try at one URL shares: the request, the session it goes through, and the
    host gate whose turn it waits for (--delay, --per-host), if any."""

    url: str
    settings: Settings
    session: requests.Session
    headers: dict[str, str]  # the validators --refresh sends
    gate: HostGate | None = None
    host: str = ""  # the gate's key for `url`


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
    if gate is not None and host is None:
        host = host_of(url)
    attempt = Attempt(url, settings, session, headers, gate, host or "")
    number = 0
    try:
        for state in _retrying(settings, sleep):
            number = state.retry_state.attempt_number
            with state:
                return _one(attempt, number) if gate is None else _gated(attempt, gate, number)
    except FetchError as exc:
        exc.attempts = number
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


def _retrying(settings: Settings, sleep: Callable[[float], None]) -> Retrying:
    """build_retrying, made once per thread for the same settings: a Retrying keeps the
    state of a call in thread-local storage, so a thread can use one for call after call."""
    return per_thread("retrying", (settings, sleep), lambda: build_retrying(settings, sleep=sleep))


def _gated(attempt: Attempt, gate: HostGate, number: int) -> Page:
    """One attempt in its host's turn; a Retry-After pauses the host for every worker."""
    host, settings = attempt.host, attempt.settings
    gate.wait_turn(host)
    watch = watchdog.current()
    # a gap (--delay, its range's draw, a Crawl-delay that --robots may find) counts from the
    # moment the request leaves: the gate hears of it
    spaced = gate.high > 0 or settings.robots
    watch.on_sent = functools.partial(gate.sent, host) if spaced else None
    try:
        return _one(attempt, number)
    except HTTPStatusError as exc:
        if exc.retry_after is not None and exc.status in (429, 503):
            gate.pause(host, min(exc.retry_after, settings.retry_after_max))
        raise
    finally:
        watch.on_sent = None
        gate.end_turn(host, opened=watch.opened)


def _one(attempt: Attempt, number: int) -> Page:
    """One request and its redirects; the whole of it must fit in --timeout.

    The watchdog enforces that from outside (fetcher.watchdog): a read it cut short may look
    like a clean end of the body, so `fired` is checked after success as well as failure.
    """
    settings, response = attempt.settings, None
    requested_at = time.time()
    with watchdog.current().armed(settings.timeout) as watch:
        try:
            response = _follow(attempt, watch)
            responded_at = time.time()
            with response:
                body = answer(response, settings, watch, conditional=bool(attempt.headers))
        except Exception as exc:
            _cut(exc, watch.fired)
            if watch.fired:
                raise _timed_out(settings, response) from None
            raise explain(exc, settings) from None
        if watch.fired:
            _cut(None, True)
            raise _timed_out(settings, response)
    return Page(
        attempt.url, response.url, response.status_code, response.headers, body, number,
        requested_at, responded_at,
    )  # fmt: skip


def _cut(exc: Exception | None, timed_out: bool) -> None:
    """Tell the tape (--warc) why the body it holds may not be whole."""
    tape = capture.current()
    if tape is not None:
        reason = "length" if isinstance(exc, TooLarge) else "disconnect"
        tape.cut("time" if timed_out else reason)


def _timed_out(settings: Settings, response: requests.Response | None) -> FetchError:
    if response is None:
        return FetchError(
            f"server did not answer within --timeout {settings.timeout:g} s", transient=True
        )
    return FetchError(f"took longer than --timeout {settings.timeout:g} s in all", transient=True)


def _follow(attempt: Attempt, watch: watchdog.Watch) -> requests.Response:
    """GET the URL, following redirects here rather than in requests, so that every hop's
    body is bounded (requests reads a redirect's whole body, however long, before following
    it). Each URL starts with no cookies; those set along its own chain apply to the next."""
    url, settings, session = attempt.url, attempt.settings, attempt.session
    fresh_cookies(session, settings)
    hop_headers: dict[str, str | None] = dict(attempt.headers)
    for hop in itertools.count():
        watch.raise_if_fired()  # a hop's cookie work is CPU, which no socket shutdown stops
        response = _send(session, url, hop_headers)
        if settings.debug:
            trace.exchange(response)
        target = _redirect_target(session, response)
        if target is None:
            return response
        discard(response, min(DRAIN_LIMIT, settings.max_size))
        if hop >= settings.max_redirects:  # (the record keeps the redirect's status)
            raise FetchError(
                too_many_redirects(settings.max_redirects), status=response.status_code
            )
        next_url = _redirect_url(response.url, target)
        if _origin(next_url) != _origin(url):  # credentials given with -H stay with their site
            hop_headers.update(dict.fromkeys(CREDENTIAL_HEADERS))
        url = next_url
    raise AssertionError("unreachable: the loop returns or raises")


def too_many_redirects(limit: int) -> str:
    if limit == 0:
        return "redirected, and --max-redirect 0 follows no redirect"
    return f"more than {limit} redirects (a redirect loop?)"


def _send(
    session: requests.Session,
    url: str,
    headers: dict[str, str | None],
) -> requests.Response:
    """One GET through the session's adapter, the body left unread.

    No socket timeouts: reads and sends wait on a blocking socket, with no poll(2) before
    each, and the watchdog ends any wait that outlasts the attempt's deadline; the connect
    alone has one, what is left of the attempt (fetcher.watchdog).

    What Session.request does, less its redirect handling: even told not to follow, requests
    works out the next request of a redirect, and reads the redirect's whole body to do so.
    """
    request = _prepare(session, url, headers)
    url = request.url or url  # as requests sends it: an IDN host in punycode (no_proxy)
    tape = capture.current()
    if tape is not None:
        tape.begin(url)
    verify, cert, proxies = session.verify, session.cert, session.proxies
    if session.trust_env:  # proxies from the environment, which may depend on the URL
        # the session's own proxies (--proxy) and verify (--insecure, --ca-bundle) passed as
        # the request's, so that no variable overrides them
        env = session.merge_environment_settings(url, dict(proxies), True, verify, cert)
        proxies, verify = env["proxies"], env["verify"]
    response = session.get_adapter(url).send(
        request,
        stream=True,
        timeout=None,
        verify=True if verify is None else verify,
        cert=cert,
        proxies=proxies,
    )
    if tape is not None:
        tape.answered(getattr(response.raw, "_original_response", None))
    if _sets_cookies(response):  # (the cookie jar's work costs a page that sets none)
        extract_cookies_to_jar(session.cookies, request, response.raw)  # type: ignore[no-untyped-call]
    return response


def _sets_cookies(response: requests.Response) -> bool:
    headers = response.headers
    return "Set-Cookie" in headers or "Set-Cookie2" in headers


def _prepare(
    session: requests.Session, url: str, headers: dict[str, str | None]
) -> requests.PreparedRequest:
    """Session.prepare_request for a bodiless GET, without its per-request merging.

    requests copies the session's cookie jar into a new one with the default policy (which
    sends host-only cookies to subdomains) and merges settings a GET never has (params,
    hooks, a body); here the session jar's own policy decides the Cookie header, and the
    headers are the session's with this hop's over them (None removes one).
    """
    request = requests.PreparedRequest()
    request.method = "GET"
    request.prepare_url(url, None)
    request.url = without_dot_segments(request.url or url)  # the path its identity has
    merged = CaseInsensitiveDict(session.headers)
    for name, value in headers.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    request.prepare_headers(merged)
    if session.cookies and "Cookie" not in request.headers:  # (a -H Cookie stands)
        request.prepare_cookies(session.cookies)
    auth = session.auth or (get_netrc_auth(url) if session.trust_env else None)
    if auth is not None or "@" in url:  # (with neither, requests would parse it for nothing)
        request.prepare_auth(auth, url)  # also user:password in the URL
    return request


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
