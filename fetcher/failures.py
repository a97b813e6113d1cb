"""What went wrong, in words: any exception from a fetch → a FetchError a person understands.

requests, urllib3, http.client, ssl and socket each raise their own kinds, wrapped in one
another; `explain` finds the cause and says what failed and whether trying again may help.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl

import requests

from fetcher import framing
from fetcher.errors import TRANSIENT_STATUSES, FetchError, first_line
from fetcher.settings import Settings
from fetcher.urls import redact

_TUNNEL = re.compile(r"Tunnel connection failed: (\d{3})")


def explain(exc: BaseException, settings: Settings, received: int | None = None) -> FetchError:
    """A FetchError a person understands, marked transient when trying again may help; a
    failure to reach or use the proxy is named as the proxy's, not the site's."""
    if isinstance(exc, FetchError):
        return exc
    error = _explain(exc, settings, received)
    if not _has(exc, "ProxyError"):
        return error
    tunnel = _TUNNEL.search(" ".join(str(e) for e in _chain(exc)))
    if tunnel:  # the proxy answered CONNECT with an error status
        code = int(tunnel.group(1))
        error = FetchError(f"HTTP {code} to CONNECT", transient=code in TRANSIENT_STATUSES)
    message = f"proxy failed: {error.message} ({proxy_named(settings)})"
    return FetchError(message, transient=error.transient)


def proxy_named(settings: Settings) -> str:
    """Which proxy, credentials masked."""
    return f"--proxy {redact(settings.proxy)}" if settings.proxy else "the proxy variables"


def _explain(exc: BaseException, settings: Settings, received: int | None) -> FetchError:
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidURL,
        ),
    ):
        return FetchError(f"URL cannot be fetched: {first_line(exc)}")
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return FetchError("TLS certificate not trusted — use --ca-bundle or --insecure")
    if isinstance(cause, ssl.SSLError) or isinstance(exc, requests.exceptions.SSLError):
        return FetchError(f"TLS handshake failed: {first_line(cause)}", transient=True)
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
    if isinstance(cause, framing.NotValidHTTP):  # (before a broken body: no mere break)
        return FetchError(str(cause)[:200], transient=True)
    if received is not None or _has(exc, "IncompleteRead", "InvalidChunkLength", "BodyCutShort"):
        return FetchError(
            f"connection broke after {received or 0} bytes of the body ({first_line(cause)})",
            transient=True,
        )
    if isinstance(cause, framing.HeadersTooLong):
        return FetchError(f"the server's {cause}")
    if isinstance(cause, (framing.TooManyHeaders, framing.UnsupportedFraming)):
        return FetchError(str(cause))
    if _has(exc, "InvalidHeader"):
        return FetchError(f"invalid response header ({first_line(cause)})", transient=True)
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
        return FetchError(f"connection failed: {first_line(cause)}", transient=True)
    return FetchError(f"{type(cause).__name__}: {first_line(cause)}")


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
