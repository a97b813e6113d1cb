"""One URL → one Page: session, timeouts, size limits, retries. No disk, no UI."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests
import urllib3
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter
from urllib3.util import Timeout

from fetcher.errors import FetchError, HTTPStatusError, TooLarge
from fetcher.politeness import HostGate, host_of
from fetcher.settings import Settings

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK = 64 * 1024
DRAIN_LIMIT = 64 * 1024  # error bodies up to this size are read away to keep the connection
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


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


def make_session(settings: Settings) -> requests.Session:
    """A Session configured once, to be reused for every URL one thread fetches."""
    session = requests.Session()
    session.headers["User-Agent"] = settings.user_agent
    session.headers.update(dict(settings.headers))
    session.verify = settings.verify
    _read_environment_once(session)
    if settings.verify is False:  # asked for with --insecure: not worth a warning per request
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    session.max_redirects = settings.max_redirects
    return session


def _read_environment_once(session: requests.Session) -> None:
    """Honour proxies, .netrc and CA-bundle variables as requests does, without its cost.

    With `trust_env`, requests reads the environment twice per request (a quarter of the
    time a keep-alive request takes). When there is no proxy and no .netrc to honour, we turn
    it off and apply the CA-bundle variables ourselves; otherwise requests keeps doing it.
    """
    names = {name.lower() for name in os.environ}
    netrc = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if names & set(PROXY_VARIABLES) or os.path.exists(netrc):
        return
    session.trust_env = False
    bundle = next((os.environ[n] for n in CA_VARIABLES if os.environ.get(n)), None)
    if session.verify is True and bundle:
        session.verify = bundle


def get_source(
    url: str,
    settings: Settings,
    session: requests.Session,
    validators: Validators | None = None,
    *,
    gate: HostGate | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Page:
    """Fetch `url`, retrying transient failures; raise FetchError with `.attempts` set.

    With a `gate`, every attempt waits for its host's turn (--delay), and a 429/503 with
    Retry-After pauses the host for every worker, not just this URL.
    """
    headers = validators.headers() if validators else {}
    retrying = build_retrying(settings, sleep=sleep)
    attempt_number = 0
    try:
        for attempt in retrying:
            attempt_number = attempt.retry_state.attempt_number
            with attempt:
                return _gated_attempt(url, settings, session, headers, attempt_number, gate)
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
    gate: HostGate | None,
) -> Page:
    if gate is None:
        return _attempt(url, settings, session, headers, number)
    host = host_of(url)
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
    """One request; the whole of it (connect, headers, body) must fit in --timeout."""
    deadline = time.monotonic() + settings.timeout
    timeout = Timeout(total=settings.timeout, connect=settings.timeout, read=settings.timeout)
    try:
        # requests passes a urllib3 Timeout through as is (its stubs do not say so)
        response = session.get(url, headers=headers, stream=True, timeout=timeout)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise explain(exc, settings) from None
    with response:
        try:
            _check_status(response, settings, bool(headers))
        except HTTPStatusError:
            _drain_small(response)
            raise
        if response.status_code == 304:
            response.raw.drain_conn()  # a 304 has no body, whatever its headers say
            body = None
        else:
            body = _read_body(response, deadline, settings)
            response.raw.release_conn()  # read to its end: the connection can serve again
    return Page(url, response.url, response.status_code, response.headers, body, number)


def _drain_small(response: requests.Response) -> None:
    """Read away a short body we do not keep (304, errors) so the connection is reused."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= DRAIN_LIMIT:
        response.raw.drain_conn()


def _check_status(response: requests.Response, settings: Settings, conditional: bool) -> None:
    code = response.status_code
    if 200 <= code < 300 or (code == 304 and conditional):
        return
    message = f"HTTP {code} {response.reason or ''}".rstrip()
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    transient = code in TRANSIENT_STATUSES
    if transient and retry_after is not None and retry_after > settings.retry_after_max:
        message += (
            f" and the server asks to retry after {retry_after:.0f} s, longer than the"
            f" {settings.retry_after_max:.0f} s fetcher waits"
        )
        transient = False
    raise HTTPStatusError(message, transient=transient, status=code, retry_after=retry_after)


def _read_body(response: requests.Response, deadline: float, settings: Settings) -> bytes:
    """Read the decoded body within the deadline and --max-size, whatever the server does."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > settings.max_size:
        raise _too_large(settings, f"Content-Length is {int(declared)} bytes")
    raw = response.raw
    sock = getattr(raw.connection, "sock", None)
    body = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(
                f"took longer than --timeout {settings.timeout:g} s in all", transient=True
            )
        if sock is not None:
            sock.settimeout(remaining)  # each read waits only for what is left of the budget
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except Exception as exc:  # urllib3 and http.client raise many kinds mid-body
            raise explain(exc, settings, len(body)) from None
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > settings.max_size:
            raise _too_large(settings, f"more than {len(body)} bytes after decompression")


def _too_large(settings: Settings, detail: str) -> TooLarge:
    return TooLarge(f"larger than --max-size {settings.max_size} bytes ({detail})")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds from either of its forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def explain(exc: BaseException, settings: Settings, received: int | None = None) -> FetchError:
    """A FetchError a person understands, marked transient when trying again may help."""
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, requests.TooManyRedirects):
        return FetchError(f"more than {settings.max_redirects} redirects (a redirect loop?)")
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidURL,
        ),
    ):
        return FetchError(f"redirected to a URL that cannot be fetched: {_first_line(exc)}")
    if isinstance(exc, requests.exceptions.ContentDecodingError) or _has(exc, "DecodeError"):
        return FetchError("body is not valid for its Content-Encoding (corrupt gzip/deflate?)")
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return FetchError("TLS certificate not trusted — use --ca-bundle or --insecure")
    if isinstance(cause, ssl.SSLError) or isinstance(exc, requests.exceptions.SSLError):
        return FetchError(f"TLS handshake failed: {_first_line(cause)}", transient=True)
    if isinstance(cause, socket.gaierror):
        temporary = cause.errno == socket.EAI_AGAIN
        return FetchError(
            "name not resolved" + (" (temporary DNS failure)" if temporary else ""),
            transient=temporary,
        )
    if isinstance(cause, ConnectionRefusedError):
        return FetchError("connection refused", transient=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or _has(exc, "ConnectTimeoutError"):
        return FetchError(f"connection timed out after {settings.timeout:g} s", transient=True)
    if (
        isinstance(cause, (TimeoutError, socket.timeout))
        or _has(exc, "ReadTimeoutError")
        or (isinstance(exc, requests.exceptions.ReadTimeout))
    ):
        return FetchError(
            f"server did not answer within --timeout {settings.timeout:g} s", transient=True
        )
    if received is not None or _has(exc, "IncompleteRead", "InvalidChunkLength"):
        return FetchError(
            f"connection broke after {received or 0} bytes of the body ({_first_line(cause)})",
            transient=True,
        )
    if _has(exc, "BadStatusLine", "LineTooLong", "UnknownProtocol") or (
        "BadStatusLine" in str(exc)
    ):
        return FetchError("the server's answer is not HTTP")
    if isinstance(cause, (ConnectionResetError, BrokenPipeError)) or getattr(
        cause, "errno", None
    ) in (errno.ECONNRESET, errno.EPIPE):
        return FetchError("connection reset by the server", transient=True)
    if _has(exc, "RemoteDisconnected", "ProtocolError"):
        return FetchError("server closed the connection without answering", transient=True)
    if isinstance(exc, requests.ConnectionError):
        return FetchError(f"connection failed: {_first_line(cause)}", transient=True)
    return FetchError(f"{type(cause).__name__}: {_first_line(cause)}")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what caused it, and exceptions carried in args (urllib3 wraps that way)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return seen


def _root_cause(exc: BaseException) -> BaseException:
    """The deepest exception that is not a library wrapper: what actually went wrong."""
    for current in reversed(_chain(exc)):
        module = type(current).__module__
        if not module.startswith(("requests", "urllib3")):
            return current
    return exc


def _has(exc: BaseException, *names: str) -> bool:
    return any(type(e).__name__ in names for e in _chain(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


_local = threading.local()


def thread_session(settings: Settings) -> requests.Session:
    """This thread's own Session, made once (requests Sessions are not thread-safe).

    Kept while the settings stay equal: a Dask worker's threads get a fresh copy of the
    same settings with every chunk, and keep their connections across chunks.
    """
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None or getattr(_local, "settings", None) != settings:
        session = _local.session = make_session(settings)
        _local.settings = settings
    return session
