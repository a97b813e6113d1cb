"""URLs: which can be fetched, and the canonical form that tells two spellings of one apart.

A URL is fetched as given; its canonical form (RFC 3986 §6.2.2: case of scheme and host,
percent-encoding, dot segments; §6.2.3: default port, empty path and query) is what dedupe
and file names go by, so `HTTP://Example.com:80/./p/%39.html?#top` is `http://example.com/p/9.html`.
Query parameters keep their order: for some sites it changes the meaning.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from requests.exceptions import RequestException
from requests.models import PreparedRequest
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

MAX_URL_LENGTH = 8192  # longer lines are refused; servers refuse such URLs anyway
DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$", re.IGNORECASE)
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# The URLs of almost every list: ASCII, a host name or IPv4 address without user info, a port
# of digits, and a path and query of characters that need no encoding (no `%`, no `\\`).
# For these every check below and the canonical form come from one match (`_plain`), where the
# full way parses each URL three times over (urllib.parse, urllib3, requests): a third of the
# main process's work per URL. Anything else takes the full way; both agree (a property test).
_PATH_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@/"
_PLAIN = re.compile(
    r"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?"
    rf"(?P<path>/[{_PATH_CHARS}]*)?(?:\?(?P<query>[{_PATH_CHARS}?]*))?(?:#[{_PATH_CHARS}?]*)?"
)


def is_url(text: str) -> bool:
    """Whether `text` (a command-line argument) is meant as an http(s) URL, not a file name."""
    return text.lower().startswith(("http://", "https://"))


def canonical(url: str) -> str:
    """One spelling for every spelling of the same resource, without credentials (a URL's
    user:password does not make another page); a URL that cannot be parsed is its own.

    Parsed by urllib3, as it is parsed to be requested: `http://a\\@b/` goes to a, which
    urllib.parse would call b.
    """
    if (plain := _plain(url)) is not None:
        scheme, host, port, path, query = plain
        host = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        path = _without_dot_segments(path) or "/"
        return f"{scheme}://{host}{path}{'?' if query else ''}{query}"
    return _canonical_parsed(url)


def _canonical_parsed(url: str) -> str:
    """`canonical` the full way, for any URL."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        return url
    scheme = (parts.scheme or "").lower()
    host = _percent_encoding(parts.host or "").lower()
    if parts.port is not None and parts.port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    path = _without_dot_segments(_percent_encoding(parts.path or "")) or "/"
    query = f"?{_percent_encoding(parts.query)}" if parts.query else ""
    return f"{scheme}://{host}{path}{query}"


def _percent_encoding(text: str) -> str:
    """Unreserved characters decoded, other escapes in upper case (RFC 3986 §6.2.2.1-2)."""
    if "%" not in text:
        return text

    def normal(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PERCENT.sub(normal, text)


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: `/a/./b/../c` → `/a/c`."""
    if "." not in path:
        return path
    segments = path.split("/")
    kept: list[str] = []
    for number, segment in enumerate(segments, start=1):
        if segment in (".", ".."):
            if segment == ".." and len(kept) > 1:
                kept.pop()
            if number == len(segments):  # `/a/.` and `/a/b/..` name a directory: `/a/`
                kept.append("")
            continue
        kept.append(segment)
    return "/".join(kept)


def _plain(url: str) -> tuple[str, str, int, str, str] | None:
    """(scheme, host, port, path, query), lowercased where case does not count, of a URL of
    the plain kind (`_PLAIN`) that can be fetched; None for any other URL."""
    match = _PLAIN.fullmatch(url)
    if match is None or len(url) > MAX_URL_LENGTH:
        return None
    scheme, host = match["scheme"].lower(), match["host"].lower()
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS[scheme]
    if port > 65535 or not _is_dns_name(host):
        return None  # (the full way says what is wrong)
    return scheme, host, port, match["path"] or "", match["query"] or ""


def check_url(url: str) -> None:
    """Raise ValueError with a short reason unless `url` is an http(s) URL we can fetch."""
    if _plain(url) is None:
        _check_parsed(url)


def _check_parsed(url: str) -> None:
    """`check_url` the full way, for any URL."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL is {len(url)} characters long (the limit is {MAX_URL_LENGTH})")
    if _CONTROL.search(url):
        raise ValueError("URL contains control characters")
    scheme, sep, _ = url.partition(":")
    if not sep or not scheme.isascii() or "/" in scheme or " " in scheme:
        raise ValueError("not a URL: it needs http:// or https:// in front")
    if scheme.lower() not in ("http", "https"):
        raise ValueError(f"unsupported scheme {scheme.lower()!r}: only http and https are fetched")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError when out of range
    except ValueError as exc:
        raise ValueError(_malformed(url, exc)) from None
    if not host:
        raise ValueError("URL has no host name")
    check_host(host, bracketed=parts.netloc.rpartition("@")[2].startswith("["))
    try:
        PreparedRequest().prepare_url(url, None)
    except (RequestException, UnicodeError, ValueError) as exc:
        raise ValueError(_malformed(url, exc)) from None


def _malformed(url: str, exc: Exception) -> str:
    # the libraries' reasons quote pieces of the URL, which with credentials may be secret
    reason = "its host or port cannot be read" if "@" in url else str(exc)
    return f"malformed URL: {reason}"


def check_host(host: str, *, bracketed: bool) -> None:
    """Raise ValueError unless `host` is an IP address or a valid (possibly IDN) DNS name."""
    if bracketed:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r}") from None
        return
    try:
        ascii_host = host.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"invalid host name {host!r}") from None
    if not _is_dns_name(ascii_host):
        raise ValueError(f"invalid host name {host!r}")


def _is_dns_name(host: str) -> bool:
    """An ASCII host name of valid labels (a trailing dot allowed), or an IPv4 address."""
    host = host[:-1] if host.endswith(".") else host
    return len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))


# Credentials masked: in records, the index, file names and messages, a URL's user:password
# is `***`.

# scheme "//" userinfo "@": the userinfo is everything up to the authority's last "@" (a "#"
# included: a password with one in it is more likely than a fragment with an "@")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:)?//[^/?\s]*@")
# another URL's credentials inside this one (a query's ?next=http://u:p@h/)
_EMBEDDED = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*@")


def redact(url: str) -> str:
    """The URL with any user:password replaced by `***`, for everything we write (file
    names included: they are made from the redacted URL).

    Found by pattern, not by parsing: a URL too malformed to parse (`http://u:pw@[::1/x`)
    must lose its secret all the same.
    """
    url = _USERINFO.sub(lambda m: f"{m.group(1) or ''}//***@", url, count=1)
    return _EMBEDDED.sub(lambda m: f"{m.group(1)}***@", url)


# In a line that is not a valid URL, whatever stands between a scheme's slashes (or
# backslashes) and the last "@" before white space may be a password: "http:\\u:pw@h",
# "GET http://u:p#w@h", "<http://u:pw@h>". Such lines are never fetched, so masking too much
# costs nothing.
_LOOSE_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:[/\\]*)[^\s@]*@")
_OPEN_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:[/\\]*)[^/\\?#\s]*$")


def redact_line(text: str) -> str:
    """`text` (a line that is no valid URL, or a message quoting one) with anything that may
    be credentials replaced by `***`."""
    return _LOOSE_USERINFO.sub(lambda m: f"{m.group(1)}***@", text)


def redact_excerpt(text: str) -> str:
    """The start of a clipped line: redacted, and an authority cut off by the clip (its "@"
    may lie beyond) masked whole."""
    return _OPEN_AUTHORITY.sub(lambda m: f"{m.group(1)}***", redact_line(text))


def without_dot_segments(url: str) -> str:
    """`url` with its path's dot segments removed, as its canonical form has them removed,
    for the request line: `/%2e%2e/x`, `/../x` and `/x` are one URL, so one request.

    For a URL as requests prepares it, whose unreserved characters are decoded: a `%2e`
    is then a dot, as the WHATWG URL parser reads it in a path (urllib3 removes dot
    segments before that decoding, so `/%2e%2e/x` would go out as `/../x`).
    """
    if "/." not in url:
        return url
    scheme, slashes, rest = url.partition("://")
    authority, slash, rest = rest.partition("/")
    path, after = _PATH_END.match(slash + rest).groups()  # type: ignore[union-attr]
    if "/." not in path:  # a dot segment starts after a slash (most paths have a dot, few that)
        return url
    return f"{scheme}{slashes}{authority}{_without_dot_segments(path)}{after}"


_PATH_END = re.compile(r"([^?#]*)(.*)", re.DOTALL)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` for a terminal: control characters (escape sequences, carriage returns) that a
    URL list or a server may carry are shown as \\xNN, not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
