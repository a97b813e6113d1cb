"""--robots: each host's robots.txt, fetched once and obeyed (RFC 9309), and its Crawl-delay.

robots.txt is asked for through the same gate, timeout, size limit and retries as a page;
Protego reads it (RFC 9309: the longest match wins, Allow over Disallow on a tie, `*` and
`$`), for the group that names the User-Agent fetcher sends. A 4xx answer means no rules
(everything allowed); a 5xx, or no answer at all, means the host is disallowed for the run.
A Crawl-delay becomes the host's floor in the gate, which every worker shares.

One `Robots` per pool of threads: in a run of threads robots.txt is fetched once per origin;
with --processes, once per origin in each worker process that meets it. No disk, no UI.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from protego import Protego
from urllib3.util import Url, parse_url

from fetcher.errors import FetchError
from fetcher.http import get_source
from fetcher.politeness import HostGate, host_of
from fetcher.session import thread_session
from fetcher.settings import DAY, Settings

REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five


@dataclass(frozen=True)
class Rules:
    """What one origin's robots.txt says: a parser, or a verdict for all of its URLs."""

    parser: Protego | None = None  # None: every URL allowed, or (with `closed`) none
    closed: str | None = None  # why every URL of the origin is disallowed for the run


class Robots:
    """The robots.txt rules of every origin this pool's threads have met, each fetched by
    the first thread that needs it while the others for that origin wait."""

    def __init__(self, settings: Settings, gate: HostGate | None) -> None:
        self.settings, self.gate = settings, gate
        self.asking = replace(settings, max_redirects=min(REDIRECTS, settings.max_redirects))
        self.rules: dict[str, Rules] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()

    def refusal(self, url: str) -> str | None:
        """Why robots.txt forbids fetching `url` (the record's note), or None if it may."""
        origin = origin_of(url)
        if origin is None:
            return None  # not a URL robots.txt can speak for: the fetch will say what is wrong
        rules = self._rules(origin, host_of(url))
        if rules.closed is not None:
            return rules.closed
        user_agent = self.settings.user_agent
        if rules.parser is None or rules.parser.can_fetch(url, user_agent):
            return None
        return f"disallowed by {origin}/robots.txt for User-Agent {user_agent!r}"

    def _rules(self, origin: str, host: str) -> Rules:
        """An origin's rules, fetched once: other threads wait for the first one's answer."""
        with self.lock:
            known = self.rules.get(origin)
            if known is not None:
                return known
            lock = self.locks.setdefault(origin, threading.Lock())
        with lock:
            known = self.rules.get(origin)
            if known is None:
                known = self.rules[origin] = self._fetch(origin, host)
            return known

    def _fetch(self, origin: str, host: str) -> Rules:
        """Ask for the origin's robots.txt and read it; its Crawl-delay floors the host."""
        url = f"{origin}/robots.txt"
        session = thread_session(self.settings)
        try:
            page = get_source(url, self.asking, session, gate=self.gate, host=host)
        except FetchError as exc:
            return unavailable(url, exc)
        rules = Protego.parse((page.body or b"").decode("utf-8", "replace"))
        delay = rules.crawl_delay(self.settings.user_agent)
        if delay and self.gate is not None:
            self.gate.set_floor(host, min(float(delay), DAY))
        return Rules(rules)


def unavailable(url: str, exc: FetchError) -> Rules:
    """RFC 9309 §2.3.1: a 4xx means no rules; anything else (a 5xx, no answer, one too
    large) that the host is disallowed, for the whole run."""
    if exc.status is not None and 400 <= exc.status < 500:
        return Rules()
    return Rules(closed=f"{url} could not be fetched ({exc.message}): the host is disallowed")


def origin_of(url: str) -> str | None:
    """`http://user@Host:80/a?b` → `http://host`: what a robots.txt speaks for (RFC 9309
    §2.3: scheme, host and port), or None if the URL has no host."""
    try:
        parts = parse_url(url)
    except ValueError:
        return None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https") or not parts.host:
        return None
    default = {"http": 80, "https": 443}[scheme]
    port = None if parts.port in (None, default) else parts.port
    return str(Url(scheme=scheme, host=parts.host.lower(), port=port).url)
