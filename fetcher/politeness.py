"""Politeness: per-host limits on what is in flight, spacing between starts, server pauses.

Two parts, each enforcing what it can see:

- `HostQueues` (main process) hands out tasks so that no host has more than --per-host in
  flight, nor two dispatches closer than --delay, nor any while the host is paused; round-robin
  across hosts so one busy host never holds up the others.
- `HostGate` (shared memory, used by every worker thread in every process) spaces the actual
  *attempts* (retries included) at least --delay apart per host (a range: a gap drawn at
  random for each start, by whoever claims it, so threads and processes share one draw), at
  least a host's robots.txt Crawl-delay apart (`set_floor`), each gap counted from when the
  previous request left (`sent`), and pauses a host for
  everybody when it answers 429/503 with Retry-After. A paused host is also throttled: from
  then on the main process lets one request at a time go to it.

And what --delay's value is: seconds, or a range of them (`parse_delay`), read by Settings.
"""

from __future__ import annotations

import functools
import hashlib
import random
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

SLOTS = 1 << 16  # per-host state cells; hosts that share one are treated as one (stricter)
STRIPES = 64  # locks guarding the cells
DELAY_MARGIN = 0.03  # seconds added to --delay: a start is claimed before the request leaves
PRUNE_AT = 10_000  # hosts remembered for --delay before those past their delay are dropped
THROTTLED_POLL = 0.02  # how often a throttled host's waiting attempt looks again


Delay = float | tuple[float, float]  # seconds, or a range waited at random (--delay 1-3)


def parse_delay(text: str) -> Delay:
    """`2` → 2.0, `1-3` → (1.0, 3.0): a range is waited at random (wget --random-wait,
    gallery-dl --sleep-request 2-4)."""
    low, dash, high = text.strip().partition("-")
    try:
        seconds = (float(low), float(high)) if dash else float(low)
    except ValueError:
        raise ValueError(
            f"{text!r} is not seconds nor a range of them (e.g. 2, 0.5, 1-3)"
        ) from None
    return as_delay(seconds)


def as_delay(value: Delay | str) -> Delay:
    """A delay given as seconds, as (low, high), or as text (`parse_delay`); a range of one
    value is that value."""
    if isinstance(value, str):
        return parse_delay(value)
    if isinstance(value, (tuple, list)):
        low, high = value
        return float(low) if low == high else (low, high)
    return value


def delay_range(delay: Delay) -> tuple[float, float]:
    """(low, high) of a delay: a single number is both."""
    return delay if isinstance(delay, tuple) else (delay, delay)


def delay_ok(delay: object, most: float) -> bool:
    """A number of seconds, or a range of them from low to high, up to `most`."""
    pair = delay if isinstance(delay, tuple) else (delay, delay)
    if len(pair) != 2 or not all(_is_seconds(x) for x in pair):
        return False
    low, high = float(pair[0]), float(pair[1])
    return 0 <= low <= high <= most


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def host_of(url: str) -> str:
    """The politeness key: the host name, lowercased, without port or credentials."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class HostGate:
    """Per-host start times and pauses, visible to threads, and with a multiprocessing
    `context` to processes too (shared memory and semaphores); without one, plain locks and
    arrays: a run of threads alone leaves nothing for multiprocessing to clean up."""

    def __init__(self, context: Any | None, delay: Delay) -> None:
        self.low, self.high = delay_range(delay)
        lock: Callable[[], Any] = context.Lock if context is not None else threading.Lock
        table: Callable[[str, int], Any] = context.RawArray if context is not None else _zeros
        self.locks = [lock() for _ in range(STRIPES)]
        self.last_start = table("d", SLOTS)  # monotonic time the last attempt started or sent
        self.gap = table("d", SLOTS)  # seconds the next attempt waits after the last one
        self.floor = table("d", SLOTS)  # the host's Crawl-delay (--robots), 0 if none
        self.paused_until = table("d", SLOTS)
        self.throttled = table("b", SLOTS)
        self.active = table("i", SLOTS)  # attempts in progress
        self.opened = table("i", SLOTS)  # connections attempts opened (what the run cost hosts)

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # (three looks an attempt: a hash each, otherwise)
    def slot(host: str) -> int:
        digest = hashlib.blake2b(host.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return int.from_bytes(digest, "big") % SLOTS

    def wait_turn(self, host: str, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block until this host may see another request start, then claim the start.

        Pair every call with `end_turn`.
        """
        slot = self.slot(host)
        lock = self.locks[slot % STRIPES]
        while True:
            with lock:
                now = time.monotonic()
                ready = max(self.paused_until[slot], self.last_start[slot] + self.gap[slot])
                if self.throttled[slot] and self.active[slot] > 0:
                    ready = max(ready, now + THROTTLED_POLL)  # one at a time once throttled
                if now >= ready:
                    self.last_start[slot] = now
                    self.gap[slot] = _spaced(max(self.floor[slot], self.draw()))
                    self.active[slot] += 1
                    return
            sleep(ready - now)  # outside the lock; then look again, things may have moved

    def sent(self, host: str) -> None:
        """A request to `host` has left just now: the gap drawn at the claim (--delay or its
        range, floored by Crawl-delay) counts from here, not from the claim, which a new
        connection's set-up (a round trip or more) made earlier."""
        slot = self.slot(host)
        with self.locks[slot % STRIPES]:
            self.last_start[slot] = max(self.last_start[slot], time.monotonic())

    def draw(self, chance: Callable[[float, float], float] = random.uniform) -> float:
        """The gap before a host's next start: --delay, or a uniform draw from its range."""
        return self.low if self.high <= self.low else chance(self.low, self.high)

    def set_floor(self, host: str, seconds: float) -> None:
        """Space this host's starts at least `seconds` apart from now on (robots.txt's
        Crawl-delay), the next one included."""
        slot = self.slot(host)
        with self.locks[slot % STRIPES]:
            self.floor[slot] = max(self.floor[slot], seconds)
            self.gap[slot] = max(self.gap[slot], _spaced(seconds))

    def floored(self, host: str) -> bool:
        """Whether a Crawl-delay spaces this host (a racy read is fine for scheduling)."""
        return bool(self.floor[self.slot(host)] > 0)

    def end_turn(self, host: str, opened: int = 0) -> None:
        """The attempt is over; it opened `opened` connections to the host."""
        slot = self.slot(host)
        with self.locks[slot % STRIPES]:
            self.active[slot] -= 1
            self.opened[slot] += opened

    def connections(self, host: str | None = None) -> int:
        """Connections opened so far, by every worker in every process: to `host` (and any
        host sharing its slot), or to all."""
        return self.opened[self.slot(host)] if host is not None else sum(self.opened)

    def pause(self, host: str, seconds: float) -> None:
        """The host asked us to wait (Retry-After): nobody starts a request to it before then."""
        slot = self.slot(host)
        with self.locks[slot % STRIPES]:
            until = time.monotonic() + seconds
            self.paused_until[slot] = max(self.paused_until[slot], until)
            self.throttled[slot] = 1

    def pause_left(self, host: str) -> tuple[float, bool]:
        """(seconds this host stays paused, throttled): to carry a pause to another machine."""
        paused_until, throttled = self.hold(host)
        return max(0.0, paused_until - time.monotonic()), throttled

    def hold(self, host: str) -> tuple[float, bool]:
        """(paused until, throttled) for the dispatcher; a racy read is fine for scheduling."""
        slot = self.slot(host)
        return self.paused_until[slot], bool(self.throttled[slot])


def _spaced(gap: float) -> float:
    """A gap, a little longer than asked: a request that opens a new connection reaches the
    server later after its start than one on a kept-alive connection."""
    return gap + DELAY_MARGIN if gap > 0 else 0.0


def _zeros(kind: str, count: int) -> array[Any]:
    return array(kind, bytes(count * array(kind).itemsize))


class HostQueues:
    """Tasks waiting for their host, handed out round-robin as limits allow (main process)."""

    def __init__(
        self, per_host: int | None, delay: Delay, gate: HostGate, *, remote: bool = False
    ) -> None:
        """`remote`: attempts run where no shared gate reaches (a Dask cluster). Then --delay
        means one task per host in flight, the next dispatched `delay` after it finished (a
        range: a time drawn at random each time). Here, the gate draws the gaps between
        attempts; the dispatcher spaces dispatches by the range's low end."""
        self.per_host, self.gate, self.remote = per_host, gate, remote
        self.delay, self.spaced = delay_range(delay)[0], delay_range(delay)[1] > 0
        self.waiting: dict[str, deque[Any]] = {}
        self.order: deque[str] = deque()  # hosts with waiting tasks, in round-robin order
        self.in_flight: dict[str, int] = {}
        self.next_dispatch: dict[str, float] = {}  # per host, when --delay lets the next go
        self.count = 0
        self.capped = 0  # tasks --per-host alone held back when pop_ready last found none

    def __len__(self) -> int:
        return self.count

    def add(self, host: str, task: Any, first: bool = False) -> None:
        queue = self.waiting.get(host)
        if queue is None:
            queue = self.waiting[host] = deque()
            self.order.append(host)
        if first:
            queue.appendleft(task)
        else:
            queue.append(task)
        self.count += 1

    def pop_ready(self, now: float) -> tuple[Any | None, float]:
        """The next task whose host allows a start now, or None and when to look again."""
        wake = float("inf")
        capped = 0
        for _ in range(len(self.order)):
            host = self.order[0]
            self.order.rotate(-1)
            ready_at, by_per_host = self._ready_at(host, now)
            if ready_at <= now:
                return self._take(host, now), now
            wake = min(wake, ready_at)
            if by_per_host:
                capped += len(self.waiting[host])
        self.capped = capped
        return None, wake

    def _ready_at(self, host: str, now: float) -> tuple[float, bool]:
        """When `host` may have its next task; True with it when --per-host alone holds it
        back (not when --delay would hold it back as well: a higher --per-host would not
        start it sooner). One task at a time once the host asked us to slow down, or with
        --delay on a cluster."""
        paused_until, throttled = self.gate.hold(host)
        # (a Crawl-delay spaces a host's requests: more than one in flight would idle threads)
        one_only = throttled or self.gate.floored(host) or (self.remote and self.spaced)
        limit = 1 if one_only else self.per_host
        next_at = self.next_dispatch.get(host, float("-inf"))  # --delay's next turn
        if limit is not None and self.in_flight.get(host, 0) >= limit:
            return float("inf"), not one_only and next_at <= now  # wakes when one finishes
        return max(paused_until, next_at), False

    def _take(self, host: str, now: float) -> Any:
        queue = self.waiting[host]
        task = queue.popleft()
        if not queue:
            del self.waiting[host]
            self.order.remove(host)
        self.count -= 1
        self.in_flight[host] = self.in_flight.get(host, 0) + 1
        self._dispatched(host, now)
        return task

    def _dispatched(self, host: str, now: float) -> None:
        """Remember when `host` may next get a task, for --delay only, and only while it
        matters: a run over millions of hosts must not keep one entry per host."""
        if not self.spaced:
            return
        self.next_dispatch[host] = now + (self.gate.draw() if self.remote else self.delay)
        if len(self.next_dispatch) >= PRUNE_AT:
            self.next_dispatch = {h: t for h, t in self.next_dispatch.items() if t > now}

    def finished(self, host: str) -> None:
        if self.remote:  # its last attempt started before this moment, somewhere
            self._dispatched(host, time.monotonic())
        left = self.in_flight.get(host, 0) - 1
        if left > 0:
            self.in_flight[host] = left
        else:
            self.in_flight.pop(host, None)

    def drain(self) -> list[Any]:
        """Everything still waiting (for a stop)."""
        tasks = [task for queue in self.waiting.values() for task in queue]
        self.waiting.clear()
        self.order.clear()
        self.count = 0
        return tasks
