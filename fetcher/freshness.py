"""Whether a saved page is still fresh, as a private cache judges it (RFC 9111 §4.2), so that
`--refresh` need not ask the server about it at all.

Only explicit freshness counts: `Cache-Control: max-age`, else `Expires` minus `Date`. A
heuristic from Last-Modified (§4.2.2) is never used, `s-maxage` is for shared caches,
`no-cache` or `no-store` always mean asking again, and a stale page is always asked about
(so `must-revalidate` is what fetcher does anyway). Pure functions of the values the index
keeps (`records.Copy`) and the time now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from fetcher.records import Copy

_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("[^"]*"|[^,\s]*))?\s*')
_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Directives:
    """What fetcher reads of a response's Cache-Control (RFC 9111 §5.2.2)."""

    max_age: float | None = None  # seconds; 0 for an unreadable value (stale: §4.2.1)
    no_cache: bool = False
    no_store: bool = False


def directives(value: str | None) -> Directives:
    """Cache-Control's directives, names case-insensitive; the first max-age counts."""
    max_age: float | None = None
    names: set[str] = set()
    for part in (value or "").split(","):
        match = _DIRECTIVE.fullmatch(part)
        if not match:
            continue
        name, argument = match.group(1).lower(), (match.group(2) or "").strip('"')
        names.add(name)
        if name == "max-age" and max_age is None:
            max_age = float(argument) if _SECONDS.fullmatch(argument) else 0.0
    return Directives(max_age, "no-cache" in names, "no-store" in names)


def http_date(value: str | None) -> float | None:
    """An HTTP date (any of RFC 9110's three forms) as seconds since the epoch, or None."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def lifetime(copy: Copy) -> float | None:
    """The freshness lifetime the server gave (§4.2.1), or None if it gave none."""
    max_age = directives(copy.cache_control).max_age
    if max_age is not None:
        return max_age
    if copy.expires is None:
        return None
    expires = http_date(copy.expires)
    if expires is None:  # an invalid Expires ("0") means already expired
        return 0.0
    return expires - _date(copy)


def current_age(copy: Copy, now: float) -> float:
    """The page's age now (§4.2.3): its age when it arrived, corrected for the time the
    request took and for the server's clock, plus the time since."""
    responded = copy.responded_at or now
    requested = copy.requested_at or responded
    apparent_age = max(0.0, responded - _date(copy))
    age_value = float(copy.age) if copy.age and _SECONDS.fullmatch(copy.age.strip()) else 0.0
    corrected_age_value = age_value + (responded - requested)
    return max(apparent_age, corrected_age_value) + (now - responded)


def fresh_until(copy: Copy, now: float) -> float | None:
    """When the saved page stops being fresh (seconds since the epoch), or None if it must
    be asked about now: no lifetime given, no-cache or no-store, or stale already."""
    if copy.responded_at is None:  # saved before fetcher kept what freshness needs
        return None
    said = directives(copy.cache_control)
    span = lifetime(copy)
    if said.no_cache or said.no_store or span is None:
        return None
    until = now + span - current_age(copy, now)
    return until if until > now else None


def note(until: float) -> str:
    """The `fresh` record's note: until when, in UTC."""
    when = datetime.fromtimestamp(until, timezone.utc).isoformat(timespec="seconds")
    return f"fresh until {when.replace('+00:00', 'Z')} (RFC 9111): not requested"


def _date(copy: Copy) -> float:
    """The response's Date, or the time it arrived if it had none (RFC 9110 §6.6.1)."""
    date = http_date(copy.date)
    return date if date is not None else (copy.responded_at or 0.0)
