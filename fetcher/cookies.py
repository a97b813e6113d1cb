"""--cookies FILE: a Netscape cookies.txt, as wget --load-cookies and curl -b read it.

The format is one cookie per line, seven fields apart by tabs: domain, include-subdomains
(TRUE/FALSE), path, secure (TRUE/FALSE), expiry (Unix time; 0 for a session cookie), name,
value. It is read here rather than by `http.cookiejar.MozillaCookieJar`, which drops what
curl and browsers' exports write: lines with the `#HttpOnly_` prefix, and session cookies
(expiry 0, which it takes for 1970 and so expired).
"""

from __future__ import annotations

import http.cookiejar
import time
from dataclasses import dataclass, field
from pathlib import Path

HTTP_ONLY = "#HttpOnly_"


@dataclass(frozen=True)
class Cookie:
    """One line of a cookies file: picklable and comparable, so it travels in Settings."""

    domain: str
    subdomains: bool
    path: str
    secure: bool
    expires: int | None  # None: a session cookie
    name: str
    value: str = field(repr=False)

    def to_cookiejar(self) -> http.cookiejar.Cookie:
        return http.cookiejar.Cookie(
            version=0,
            name=self.name,
            value=self.value,
            port=None,
            port_specified=False,
            domain=self.domain,
            domain_specified=self.subdomains,
            domain_initial_dot=self.domain.startswith("."),
            path=self.path,
            path_specified=True,
            secure=self.secure,
            expires=self.expires,
            discard=self.expires is None,
            comment=None,
            comment_url=None,
            rest={},
        )


def load_cookies(path: str | Path) -> tuple[Cookie, ...]:
    """The unexpired cookies of a cookies file; ValueError with the file and line if it
    cannot be read or a line is not a cookie."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read --cookies {path}: {exc.strerror or exc}") from None
    cookies = []
    now = time.time()
    for number, line in enumerate(text.splitlines(), start=1):
        cookie = _parse(line.strip("\r\n"), f"--cookies {path} line {number}")
        if cookie is not None and (cookie.expires is None or cookie.expires > now):
            cookies.append(cookie)
    return tuple(cookies)


def _parse(line: str, where: str) -> Cookie | None:
    if line.startswith(HTTP_ONLY):
        line = line[len(HTTP_ONLY) :]
    elif not line.strip() or line.lstrip().startswith("#"):
        return None
    fields = line.split("\t")
    if len(fields) == 6:  # an empty value at the end of the line, its tab trimmed away
        fields.append("")
    if len(fields) != 7 or not fields[0] or not fields[5]:
        raise ValueError(f"{where}: not a cookie (7 fields apart by tabs are expected)")
    domain, subdomains, path, secure, expires, name, value = fields
    if not (expires.isascii() and expires.isdigit()):
        raise ValueError(f"{where}: the expiry {expires[:20]!r} is not a Unix time")
    if not (sendable(name) and sendable(value)) or any(c in value for c in ";\r\n\0"):
        raise ValueError(f"{where}: cookie {name[:40]!r} cannot be sent as it is")
    return Cookie(
        domain=domain.lower(),
        subdomains=subdomains.upper() == "TRUE",
        path=path or "/",
        secure=secure.upper() == "TRUE",
        expires=int(expires) or None,
        name=name,
        value=value,
    )


def sendable(text: str) -> bool:
    """Whether http.client can send it in a header: header values go out as Latin-1."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


# Host-only cookies (include-subdomains FALSE, or Set-Cookie without Domain) go to their own
# host alone, as browsers and curl send them; http.cookiejar's default policy would send
# them to every subdomain too.
POLICY = http.cookiejar.DefaultCookiePolicy(
    strict_ns_domain=http.cookiejar.DefaultCookiePolicy.DomainStrictNonDomain
)
