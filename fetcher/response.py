"""A response's status and body: checked, bounded by --max-size and the attempt's
deadline, read whole or refused. No retries (fetcher.http decides those), no disk."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests

from fetcher import capture, watchdog
from fetcher.codings import Decoder
from fetcher.errors import TRANSIENT_STATUSES, FetchError, HTTPStatusError, TooLarge
from fetcher.failures import explain, proxy_named
from fetcher.settings import Settings

CHUNK = 64 * 1024
DRAIN_LIMIT = 64 * 1024  # bodies we do not keep (errors, redirects) are read away up to this
_DIGITS = re.compile(r"[0-9]+")


def answer(
    response: requests.Response, settings: Settings, watch: watchdog.Watch, conditional: bool
) -> bytes | None:
    """The final response's body, or None for a 304 Not Modified; errors raise."""
    try:
        check_status(response, settings, conditional)
    except HTTPStatusError:
        discard(response, DRAIN_LIMIT)
        raise
    if response.status_code in (204, 304) and (tape := capture.current()) is not None:
        tape.ended()  # (no body, whatever the headers say: nothing is left unread)
    if response.status_code == 304:
        discard(response, DRAIN_LIMIT)  # a 304 has no body, whatever its headers say
        return None
    if response.status_code == 204:  # nor a 204 (RFC 9112 §6.3): nothing to measure or decode
        discard(response, DRAIN_LIMIT)
        return b""
    return read_body(response, settings, watch)


def discard(response: requests.Response, limit: int) -> None:
    """Read away a body we do not keep, so its connection can serve again, if it declares a
    length within `limit`; any other costs the connection instead, never memory or time (a
    chunked body may end in trailer lines without end, which http.client reads all of)."""
    raw = response.raw
    try:
        length = content_length(response.headers)
    except FetchError:
        length = None
    tape = capture.current()
    if response.status_code < 200 or length is None or length > limit:
        if tape is not None and length == 0:  # (no body: nothing was left unread)
            tape.ended()
        response.close()  # (a 101: what follows is not HTTP, and must not be reused)
        return
    try:
        while limit > 0:
            chunk = raw.read1(min(CHUNK, limit), decode_content=False)
            if not chunk:
                if tape is not None:
                    tape.ended()
                raw.release_conn()
                return
            if tape is not None:
                tape.received(chunk)
            limit -= len(chunk)
    except Exception:  # a body we throw away may be as broken as it likes
        pass
    response.close()


def check_status(response: requests.Response, settings: Settings, conditional: bool) -> None:
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


def read_body(response: requests.Response, settings: Settings, watch: watchdog.Watch) -> bytes:
    """The decoded body, whole and verified, within --max-size whatever the server sends."""
    declared = content_length(response.headers)
    if declared is not None and declared > settings.max_size:
        raise too_large(settings, f"Content-Length is {declared} bytes")
    decoder = Decoder(
        response.headers.get("Content-Encoding"), settings.max_size, watch.raise_if_fired
    )
    raw = response.raw
    body = io.BytesIO()
    tape = capture.current()
    while True:
        try:
            chunk = raw.read1(CHUNK, decode_content=False)
        except Exception as exc:  # urllib3 and http.client raise many kinds mid-body
            raise explain(exc, settings, body.tell()) from None
        if not chunk:
            break
        if tape is not None:
            tape.received(chunk)
        for piece in decoder.decode(chunk) if decoder else (chunk,):
            body.write(piece)
            if body.tell() > settings.max_size:
                raise too_large(settings, f"more than {body.tell()} bytes after decompression")
    decoder.finish()
    if tape is not None:
        tape.ended()
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


def too_large(settings: Settings, detail: str) -> TooLarge:
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
